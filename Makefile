.PHONY: demo test bench package

demo:
	bash scripts/demo.sh

test:
	bash scripts/test.sh

bench:
	bash bench/run.sh

package:
	bash scripts/package.sh
