.PHONY: demo test bench

demo:
	bash scripts/demo.sh

test:
	bash scripts/test.sh

bench:
	bash bench/run.sh
