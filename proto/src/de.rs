//! Reading JSON into derived types with refusals that name the field and
//! the value: what the config ([`crate::config`]) and the API's request
//! bodies ([`crate::api`]) share.
//!
//! Both are read the same way: the text into a [`serde_json::Value`]
//! (syntax errors), the value into derived structs through
//! `serde_path_to_error` (shape errors, with the path of the field at
//! fault), then a check of the typed fields (meaning). A shape error is
//! worded by its reader from the path and [`value_at`] the path.

use std::marker::PhantomData;

use serde::de::{self, DeserializeOwned, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, forward_to_deserialize_any};
use serde_json::Value;
use serde_path_to_error::{Path, Segment};

/// The names of the fields a derived struct reads, in declaration order
/// (what serde derive hands its deserializer): the one list of the fields
/// a reader knows, for refusing or reporting the others.
pub fn fields_of<T: DeserializeOwned>() -> &'static [&'static str] {
    /// A deserializer that keeps the field names it is asked for and
    /// deserializes nothing.
    struct Probe<'a>(&'a mut &'static [&'static str]);

    impl<'de> Deserializer<'de> for Probe<'_> {
        type Error = de::value::Error;

        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
            Err(de::Error::custom("not a struct"))
        }

        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _name: &'static str,
            fields: &'static [&'static str],
            _visitor: V,
        ) -> Result<V::Value, Self::Error> {
            *self.0 = fields;
            Err(de::Error::custom("probed"))
        }

        forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
            bytes byte_buf option unit unit_struct newtype_struct seq tuple
            tuple_struct map enum identifier ignored_any
        }
    }

    let mut fields: &'static [&'static str] = &[];
    // Always an error: the probe stops at the struct.
    let _ = T::deserialize(Probe(&mut fields));
    fields
}

/// For `#[serde(default, deserialize_with = "given")]` on an `Option`: an
/// absent field is `None`, a present one must hold a `T`. A plain `Option`
/// would take `null` for absent; a field given as `null` is refused like
/// any value of the wrong type.
pub fn given<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(deserializer).map(Some)
}

/// A `T` that must be a JSON object. A derived struct also reads a JSON
/// array, field by field in order; nothing this project reads is written
/// that way.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Object<T>(pub T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Object<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Only<T>(PhantomData<T>);

        impl<'de, T: Deserialize<'de>> Visitor<'de> for Only<T> {
            type Value = Object<T>;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an object")
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Object<T>, A::Error> {
                T::deserialize(de::value::MapAccessDeserializer::new(map)).map(Object)
            }
        }

        deserializer.deserialize_map(Only(PhantomData))
    }
}

/// The value at `path` in `doc`, if there is one (a missing field has
/// none).
pub fn value_at<'a>(doc: &'a Value, path: &Path) -> Option<&'a Value> {
    path.iter().try_fold(doc, |v, segment| match segment {
        Segment::Seq { index } => v.get(index),
        Segment::Map { key } => v.get(key),
        Segment::Enum { .. } | Segment::Unknown => Some(v),
    })
}

/// The field serde found missing, from its message (`` missing field `ip` ``).
pub fn missing_field(e: &serde_json::Error) -> Option<String> {
    let m = e.to_string();
    m.strip_prefix("missing field `")
        .and_then(|rest| rest.strip_suffix('`'))
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a failure is the test failing

    use super::*;

    #[derive(Debug, Deserialize, PartialEq)]
    struct Inner {
        #[serde(default, deserialize_with = "given")]
        n: Option<u8>,
        #[serde(rename = "type", default)]
        kind: Option<String>,
    }

    #[derive(Debug, Deserialize)]
    struct Outer {
        ip: std::net::IpAddr,
        #[serde(default)]
        inner: Vec<Object<Inner>>,
    }

    fn read(text: &str) -> Result<Outer, (String, Option<Value>, String)> {
        let doc: Value = serde_json::from_str(text).unwrap();
        serde_path_to_error::deserialize(&doc).map_err(|e| {
            let at = value_at(&doc, e.path()).cloned();
            (e.path().to_string(), at, e.inner().to_string())
        })
    }

    #[test]
    fn fields_are_the_serialized_names_in_order() {
        assert_eq!(fields_of::<Inner>(), ["n", "type"]);
        assert_eq!(fields_of::<Outer>(), ["ip", "inner"]);
        assert!(fields_of::<u8>().is_empty());
    }

    #[test]
    fn given_refuses_null_and_object_refuses_arrays() {
        let o = read(r#"{"ip":"198.51.100.1","inner":[{"n":1},{}]}"#).unwrap();
        assert_eq!(o.ip.to_string(), "198.51.100.1");
        assert_eq!(
            o.inner[1].0,
            Inner {
                n: None,
                kind: None
            }
        );
        let (path, at, _) = read(r#"{"ip":"198.51.100.1","inner":[{"n":null}]}"#).unwrap_err();
        assert_eq!((path.as_str(), at), ("inner[0].n", Some(Value::Null)));
        let (path, at, message) = read(r#"{"ip":"198.51.100.1","inner":[[1]]}"#).unwrap_err();
        assert_eq!(
            (path.as_str(), at, message.as_str()),
            (
                "inner[0]",
                Some(serde_json::json!([1])),
                "invalid type: sequence, expected an object"
            )
        );
    }

    #[test]
    fn the_value_at_a_path_and_a_missing_field() {
        let (path, at, _) = read(r#"{"ip":"198.51.100.1","inner":[{},{"n":300}]}"#).unwrap_err();
        assert_eq!((path.as_str(), at), ("inner[1].n", Some(300.into())));
        let doc = serde_json::json!({"inner": []});
        let e = serde_path_to_error::deserialize::<_, Outer>(&doc).unwrap_err();
        assert_eq!(missing_field(e.inner()).as_deref(), Some("ip"));
        assert_eq!(value_at(&doc, e.path()), Some(&doc));
    }
}
