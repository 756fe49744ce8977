//! The manifest argument read straight from its jsonb, without building a
//! `serde_json::Value` first. A 10,000-change no-op spent about a fifth of
//! its time making that value (a String per key and string, a map per
//! object) and dropping it again (docs/benchmarks.md). Here the jsonb is read
//! once into a tree of borrowed strings, its canonical hash taken from the
//! tree, and the document deserialized from it.
//!
//! This is only the path of a manifest that reads: anything it does not take
//! as it is (a document nested too deep, a number serde cannot hold, text
//! that is not UTF-8, any error reading the document) sends the caller back
//! to `Manifest::from_value`, which says exactly what is wrong and where.

use crate::jsonb_arg::{numeric, StoredJsonb};
use pg_deploy_core::argument::MAX_DEPTH;
use pg_deploy_core::document::ReadError;
use pg_deploy_core::json::CanonicalHasher;
use pg_deploy_core::manifest::ManifestDocument;
use pg_deploy_core::{Manifest, ManifestError};
use pgrx::pg_sys;
use serde::de::value::BorrowedStrDeserializer;
use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::Number;

/// The manifest in `datum` and its validation's outcome, or None when this
/// path does not read it (the caller reads it through a `Value`).
pub fn read(datum: StoredJsonb) -> Option<Result<Manifest, ManifestError>> {
    // SAFETY: the datum is the function's jsonb argument, valid for the call;
    // the tree borrows from its detoasted copy, which lives as long.
    let tree = unsafe { tree(datum.0, None) }?;
    let mut hasher = CanonicalHasher::default();
    write_canonical(&tree, &mut hasher);
    let (sha256, canonical_len) = hasher.finish();
    let doc = ManifestDocument::deserialize(&tree).ok()?;
    Some(Manifest::from_read_document_deferring_checksums(
        doc,
        sha256,
        canonical_len,
    ))
}

/// The manifest in `datum` with only its head and its changes' ids read
/// ([`Manifest::elided`]), or None when they do not read as they are (the
/// caller reads the whole manifest, which says what is wrong). The changes'
/// objects are not walked: each one's "id" is looked up by key.
pub fn read_elided(datum: StoredJsonb) -> Option<Manifest> {
    let mut changes: *mut pg_sys::JsonbContainer = std::ptr::null_mut();
    // SAFETY: as in `read`; `changes` points into the same detoasted jsonb.
    let head = unsafe { tree(datum.0, Some(&mut changes)) }?;
    if changes.is_null() {
        return None;
    }
    // SAFETY: `changes` is the container the iterator returned for the
    // manifest's "changes", valid for the call.
    let ids = unsafe { change_ids(changes) }?;
    let doc = ManifestDocument::deserialize(&head).ok()?;
    Manifest::elided(doc, ids).ok()
}

/// `sha256:<hex>` of the jsonb's bytes. jsonb keeps one form of a document
/// (its keys sorted, duplicates dropped), so the same bytes are the same
/// document: a deployment records this with its manifest, and a re-apply
/// of the same bytes is known without reading them (`read_elided`).
pub fn digest(datum: StoredJsonb) -> String {
    // SAFETY: pg_detoast_datum_packed returns the jsonb untoasted (or the
    // datum itself), a varlena whose data is its size minus the header.
    unsafe {
        let jsonb = pg_sys::pg_detoast_datum_packed(datum.0.cast_mut_ptr());
        let bytes = std::slice::from_raw_parts(
            pgrx::varlena::vardata_any(jsonb).cast::<u8>(),
            pgrx::varlena::varsize_any_exhdr(jsonb),
        );
        pg_deploy_core::checksum::sha256_checksum(bytes)
    }
}

/// The "id" of every object in the array `changes`, or None when an element
/// is not an object with a string "id".
///
/// # Safety
/// `changes` is a jsonb container valid for `'a`.
unsafe fn change_ids(changes: *mut pg_sys::JsonbContainer) -> Option<Vec<String>> {
    // SAFETY: per the contract; the iterator returns each element of the
    // array (skipNested: an object as a jbvBinary container), and
    // getKeyJsonValueFromContainer fills `id` with a value in that container.
    unsafe {
        if (*changes).header & pg_sys::JB_FARRAY == 0 {
            return None;
        }
        let mut ids = Vec::with_capacity(((*changes).header & pg_sys::JB_CMASK) as usize);
        let mut iterator = pg_sys::JsonbIteratorInit(changes);
        let mut item: pg_sys::JsonbValue = std::mem::zeroed();
        let mut id: pg_sys::JsonbValue = std::mem::zeroed();
        loop {
            match pg_sys::JsonbIteratorNext(&mut iterator, &mut item, true) {
                pg_sys::JsonbIteratorToken::WJB_BEGIN_ARRAY => continue,
                pg_sys::JsonbIteratorToken::WJB_END_ARRAY | pg_sys::JsonbIteratorToken::WJB_DONE => return Some(ids),
                pg_sys::JsonbIteratorToken::WJB_ELEM if item.type_ == pg_sys::jbvType::jbvBinary => {
                    let object = item.val.binary.data;
                    if (*object).header & pg_sys::JB_FOBJECT == 0 {
                        return None;
                    }
                    let key = c"id";
                    let found = pg_sys::getKeyJsonValueFromContainer(object, key.as_ptr(), 2, &mut id);
                    if found.is_null() || id.type_ != pg_sys::jbvType::jbvString {
                        return None;
                    }
                    ids.push(string(&id)?.to_owned());
                }
                _ => return None,
            }
        }
    }
}

/// A JSON value whose strings point into the jsonb. Objects keep their
/// members sorted bytewise by key, the canonical order.
#[derive(Debug, PartialEq)]
enum Tree<'a> {
    Null,
    Bool(bool),
    Number(Number),
    Str(&'a str),
    Array(Vec<Tree<'a>>),
    Object(Vec<(&'a str, Tree<'a>)>),
}

/// A container being read: an array's elements, or an object's members and
/// the key of the value to come.
enum Open<'a> {
    Array(Vec<Tree<'a>>),
    Object(Vec<(&'a str, Tree<'a>)>, &'a str),
}

/// The document `datum` holds, or None when it is not an object or array,
/// is nested past `MAX_DEPTH`, or has a string or number read otherwise.
/// With `changes`, the top-level "changes" is not read: it is left as an
/// empty array in the tree, and its container given there.
///
/// # Safety
/// `datum` is a jsonb datum, possibly toasted, valid for `'a`.
unsafe fn tree<'a>(datum: pg_sys::Datum, mut changes: Option<&mut *mut pg_sys::JsonbContainer>) -> Option<Tree<'a>> {
    let mut open: Vec<Open<'a>> = Vec::new();
    // SAFETY: pg_detoast_datum returns the jsonb untoasted (a palloc'd copy
    // in the call's memory context, or the datum itself), which the iterator
    // reads; each JsonbValue it fills is read by the type it says, and its
    // strings point into that jsonb.
    unsafe {
        let jsonb = pg_sys::pg_detoast_datum(datum.cast_mut_ptr()).cast::<pg_sys::Jsonb>();
        if (*jsonb).root.header & pg_sys::JB_FSCALAR != 0 {
            return None;
        }
        let mut iterator = pg_sys::JsonbIteratorInit(&mut (*jsonb).root);
        let mut item: pg_sys::JsonbValue = std::mem::zeroed();
        let mut skip_next = false;
        loop {
            let token = pg_sys::JsonbIteratorNext(&mut iterator, &mut item, skip_next);
            if std::mem::take(&mut skip_next) {
                // The value of the top-level "changes", not descended into.
                if token != pg_sys::JsonbIteratorToken::WJB_VALUE || item.type_ != pg_sys::jbvType::jbvBinary {
                    return None;
                }
                if let (Some(container), Some(Open::Object(members, key))) = (changes.as_deref_mut(), open.last_mut()) {
                    *container = item.val.binary.data;
                    members.push((std::mem::take(key), Tree::Array(Vec::new())));
                }
                continue;
            }
            let value = match token {
                pg_sys::JsonbIteratorToken::WJB_DONE => return None,
                pg_sys::JsonbIteratorToken::WJB_BEGIN_ARRAY => {
                    open.push(Open::Array(Vec::with_capacity(item.val.array.nElems.max(0) as usize)));
                    if open.len() > MAX_DEPTH {
                        return None;
                    }
                    continue;
                }
                pg_sys::JsonbIteratorToken::WJB_BEGIN_OBJECT => {
                    open.push(Open::Object(
                        Vec::with_capacity(item.val.object.nPairs.max(0) as usize),
                        "",
                    ));
                    if open.len() > MAX_DEPTH {
                        return None;
                    }
                    continue;
                }
                pg_sys::JsonbIteratorToken::WJB_KEY => {
                    let top = open.len() == 1;
                    if let Some(Open::Object(_, key)) = open.last_mut() {
                        *key = string(&item)?;
                        skip_next = changes.is_some() && top && *key == "changes";
                    }
                    continue;
                }
                pg_sys::JsonbIteratorToken::WJB_END_ARRAY | pg_sys::JsonbIteratorToken::WJB_END_OBJECT => {
                    match open.pop()? {
                        Open::Array(items) => Tree::Array(items),
                        Open::Object(mut members, _) => {
                            members.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
                            Tree::Object(members)
                        }
                    }
                }
                _ => scalar(&item)?,
            };
            match open.last_mut() {
                None => return Some(value),
                Some(Open::Array(items)) => items.push(value),
                Some(Open::Object(members, key)) => members.push((std::mem::take(key), value)),
            }
        }
    }
}

/// A scalar the iterator returned.
///
/// # Safety
/// `item` is a scalar the iterator returned, its strings valid for `'a`.
unsafe fn scalar<'a>(item: &pg_sys::JsonbValue) -> Option<Tree<'a>> {
    // SAFETY: the union is read as the variant `type_` names.
    unsafe {
        Some(match item.type_ {
            pg_sys::jbvType::jbvNull => Tree::Null,
            pg_sys::jbvType::jbvBool => Tree::Bool(item.val.boolean),
            pg_sys::jbvType::jbvString => Tree::Str(string(item)?),
            pg_sys::jbvType::jbvNumeric => match numeric(item.val.numeric) {
                Ok(serde_json::Value::Number(n)) => Tree::Number(n),
                _ => return None,
            },
            _ => return None,
        })
    }
}

/// A string or key the iterator returned, if it is UTF-8.
///
/// # Safety
/// `item` is a jbvString whose `len` bytes at `val` are valid for `'a`.
unsafe fn string<'a>(item: &pg_sys::JsonbValue) -> Option<&'a str> {
    // SAFETY: per the contract.
    unsafe {
        let s = item.val.string;
        if s.val.is_null() || s.len <= 0 {
            return Some("");
        }
        std::str::from_utf8(std::slice::from_raw_parts(s.val.cast::<u8>(), s.len as usize)).ok()
    }
}

fn write_canonical(tree: &Tree<'_>, out: &mut CanonicalHasher) {
    match tree {
        Tree::Null => out.raw("null"),
        Tree::Bool(b) => out.raw(if *b { "true" } else { "false" }),
        Tree::Number(n) => out.raw(&n.to_string()),
        Tree::Str(s) => out.string(s),
        Tree::Array(items) => {
            out.raw("[");
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.raw(",");
                }
                write_canonical(item, out);
            }
            out.raw("]");
        }
        Tree::Object(members) => {
            out.raw("{");
            for (i, (key, value)) in members.iter().enumerate() {
                if i > 0 {
                    out.raw(",");
                }
                out.string(key);
                out.raw(":");
                write_canonical(value, out);
            }
            out.raw("}");
        }
    }
}

/// A wrong type: the caller reads the document again to say where and what.
fn wrong<T>(expected: &str) -> Result<T, ReadError> {
    Err(ReadError::Other(format!("expected {expected}")))
}

/// Reads a tree as `pg_deploy_core::document::ValueReader` reads a value, for
/// documents that read: a null field is absent, and an unknown field is an
/// error (whose details do not matter: the caller reads the document again).
impl<'de> de::Deserializer<'de> for &'de Tree<'de> {
    type Error = ReadError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ReadError> {
        match self {
            Tree::Null => visitor.visit_unit(),
            Tree::Bool(b) => visitor.visit_bool(*b),
            Tree::Number(n) => {
                if let Some(u) = n.as_u64() {
                    visitor.visit_u64(u)
                } else if let Some(i) = n.as_i64() {
                    visitor.visit_i64(i)
                } else {
                    visitor.visit_f64(n.as_f64().unwrap_or(f64::NAN))
                }
            }
            Tree::Str(s) => visitor.visit_borrowed_str(s),
            Tree::Array(items) => visitor.visit_seq(Items(items.iter())),
            Tree::Object(members) => visitor.visit_map(Members::new(members.iter().collect())),
        }
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ReadError> {
        match self {
            Tree::Bool(b) => visitor.visit_bool(*b),
            _ => wrong("a boolean"),
        }
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ReadError> {
        match self {
            Tree::Str(s) => visitor.visit_borrowed_str(s),
            _ => wrong("a string"),
        }
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ReadError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ReadError> {
        match self {
            Tree::Array(items) => visitor.visit_seq(Items(items.iter())),
            _ => wrong("an array"),
        }
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ReadError> {
        match self {
            Tree::Object(members) => visitor.visit_map(Members::new(members.iter().collect())),
            _ => wrong("an object"),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, ReadError> {
        let Tree::Object(members) = self else {
            return wrong("an object");
        };
        if let Some((unknown, _)) = members.iter().find(|(key, _)| !fields.contains(key)) {
            return Err(ReadError::Other(format!("{unknown}: unknown field")));
        }
        let present = members.iter().filter(|(_, value)| !matches!(value, Tree::Null));
        visitor.visit_map(Members::new(present.collect()))
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ReadError> {
        match self {
            Tree::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, ReadError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ReadError> {
        visitor.visit_unit()
    }

    serde::forward_to_deserialize_any! {
        i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char bytes byte_buf
        unit unit_struct tuple tuple_struct enum identifier
    }
}

struct Items<'de>(std::slice::Iter<'de, Tree<'de>>);

impl<'de> SeqAccess<'de> for Items<'de> {
    type Error = ReadError;

    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>, ReadError> {
        self.0.next().map(|item| seed.deserialize(item)).transpose()
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.0.len())
    }
}

struct Members<'de> {
    members: std::vec::IntoIter<&'de (&'de str, Tree<'de>)>,
    value: Option<&'de Tree<'de>>,
}

impl<'de> Members<'de> {
    fn new(members: Vec<&'de (&'de str, Tree<'de>)>) -> Self {
        Members {
            members: members.into_iter(),
            value: None,
        }
    }
}

impl<'de> MapAccess<'de> for Members<'de> {
    type Error = ReadError;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, ReadError> {
        let Some((key, value)) = self.members.next() else {
            return Ok(None);
        };
        self.value = Some(value);
        seed.deserialize(BorrowedStrDeserializer::new(key)).map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, ReadError> {
        match self.value.take() {
            Some(value) => seed.deserialize(value),
            None => Err(ReadError::Other("a value was read before its key".into())),
        }
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.members.len())
    }
}
