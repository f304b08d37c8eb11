//! Provider answers as typed structs (serde derive), read straight from the
//! body bytes: fields no provider's entry names are skipped without being
//! kept, so a page costs about its own size in memory, never a generic JSON
//! tree several times larger.
//!
//! Providers are data ([`ListShape`](crate::domain::provider::ListShape)
//! names fields), so the structs carry every field some provider uses and
//! the accessors of [`WireModel`] pick by name. Reading is as forgiving as the
//! providers need: a field of an unexpected type counts as absent, and a
//! list entry that is not an object is skipped ([`Lenient`]).

use std::fmt;
use std::marker::PhantomData;

use serde::Deserialize;

use crate::domain::model::MAX_MODELS;
use serde::de::value::{MapAccessDeserializer, SeqAccessDeserializer};
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// A value read as `T` when it is one, else `None` (and skipped unread).
/// Hand-written because serde's `untagged` would first buffer the whole
/// value in a generic tree, the very cost this module avoids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lenient<T>(pub Option<T>);

impl<T> Default for Lenient<T> {
    fn default() -> Self {
        Lenient(None)
    }
}

impl<T> Lenient<T> {
    /// The value, if it had the expected type.
    pub fn get(&self) -> Option<&T> {
        self.0.as_ref()
    }
}

impl<T: Copy> Lenient<T> {
    fn copied(&self) -> Option<T> {
        self.0
    }
}

impl Lenient<String> {
    fn text(&self) -> Option<&str> {
        self.0.as_deref()
    }
}

impl Lenient<Entries> {
    fn entries(&self) -> Option<&[Entry]> {
        self.0.as_ref().map(|entries| entries.0.as_slice())
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Lenient<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(LenientVisitor(PhantomData))
    }
}

struct LenientVisitor<T>(PhantomData<T>);

macro_rules! forward_scalar {
    ($($method:ident: $ty:ty => $de:ident),* $(,)?) => {$(
        fn $method<E: de::Error>(self, v: $ty) -> Result<Self::Value, E> {
            Ok(Lenient(T::deserialize(de::value::$de::<E>::new(v)).ok()))
        }
    )*};
}

impl<'de, T: Deserialize<'de>> Visitor<'de> for LenientVisitor<T> {
    type Value = Lenient<T>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    forward_scalar! {
        visit_bool: bool => BoolDeserializer,
        visit_i64: i64 => I64Deserializer,
        visit_u64: u64 => U64Deserializer,
        visit_f64: f64 => F64Deserializer,
        visit_str: &str => StrDeserializer,
        visit_string: String => StringDeserializer,
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Lenient(
            T::deserialize(de::value::BorrowedStrDeserializer::<E>::new(v)).ok(),
        ))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Lenient(None))
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Lenient(None))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        // A `T` that is no sequence refuses before reading an element; the
        // rest is then skipped.
        let value = T::deserialize(SeqAccessDeserializer::new(&mut seq)).ok();
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Lenient(value))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let value = T::deserialize(MapAccessDeserializer::new(&mut map)).ok();
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Lenient(value))
    }
}

/// Declares a wire struct by its fields, grouped by what they hold: the
/// struct (every field [`Lenient`], absent ones defaulted) and one by-name
/// accessor per group follow, so a field is named once.
macro_rules! wire_struct {
    (
        $(#[$meta:meta])*
        pub struct $name:ident {
            $( $(#[$doc:meta])* fn $accessor:ident -> $out:ty = $read:ident($ty:ty) { $($field:ident),* $(,)? } )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Default, Deserialize)]
        #[serde(default)]
        #[allow(non_snake_case)]
        pub struct $name {
            $( $( $field: Lenient<$ty>, )* )*
        }

        impl $name {
            $(
                $(#[$doc])*
                pub fn $accessor(&self, field: &str) -> Option<$out> {
                    match field {
                        $( stringify!($field) => self.$field.$read(), )*
                        _ => None,
                    }
                }
            )*
        }
    };
}

wire_struct! {
    /// One entry of a model list, with every field some provider's shape names.
    pub struct WireModel {
        /// The text field a shape names (`None` for a name no provider uses).
        fn text -> &str = text(String) {
            id, name, display_name, displayName, owned_by, organization, model, owner
        }
        /// The number field a shape names.
        fn number -> u64 = copied(u64) {
            context_window, max_context_length, context_length, max_model_len, inputTokenLimit, outputTokenLimit
        }
        /// The flag field a shape names.
        fn flag -> bool = copied(bool) { active }
    }
}

/// A list entry: a model when it is an object, else skipped.
pub type Entry = Lenient<WireModel>;

/// A page's entries, at most [`MAX_MODELS`]: one more fails the page while
/// it is read (no provider lists that many models at once), so a page of
/// `[0,0,0,…]` costs at most the cap in entries, never millions of them.
#[derive(Debug, Default)]
pub struct Entries(pub Vec<Entry>);

/// Reads [`Entries`], counting as it goes.
struct EntriesVisitor;

impl<'de> Visitor<'de> for EntriesVisitor {
    type Value = Entries;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "an array of at most {MAX_MODELS} entries")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Entries, A::Error> {
        // The size hint of a JSON array is unknown: grow as entries come.
        let mut entries = Vec::new();
        while let Some(entry) = seq.next_element::<Entry>()? {
            if entries.len() == MAX_MODELS {
                return Err(de::Error::custom(format!("more than {MAX_MODELS} entries")));
            }
            entries.push(entry);
        }
        Ok(Entries(entries))
    }
}

impl<'de> Deserialize<'de> for Entries {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_seq(EntriesVisitor)
    }
}

wire_struct! {
    /// One page of a model list (an object), with every list and paging field
    /// some provider uses.
    pub struct WirePage {
        /// The entries under the field a shape names (`None`: absent or no array).
        fn items -> &[Entry] = entries(Entries) { data, models }
        /// A paging text field.
        fn text -> &str = text(String) { next_page_token, nextPageToken, last_id }
        /// A paging flag.
        fn flag -> bool = copied(bool) { has_more }
    }
}

/// A page as it came: an object (most providers) or a bare array (Together).
#[derive(Debug)]
pub enum WireBody {
    /// `{ "data": [...], ... }`.
    Object(WirePage),
    /// `[ ... ]`.
    Array(Entries),
}

impl<'de> Deserialize<'de> for WireBody {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct BodyVisitor;
        impl<'de> Visitor<'de> for BodyVisitor {
            type Value = WireBody;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object or array")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<WireBody, A::Error> {
                Entries::deserialize(SeqAccessDeserializer::new(seq)).map(WireBody::Array)
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<WireBody, A::Error> {
                WirePage::deserialize(MapAccessDeserializer::new(map)).map(WireBody::Object)
            }
        }
        deserializer.deserialize_any(BodyVisitor)
    }
}

/// An error answer's body: the fields the refusal classification reads.
#[derive(Debug, Default, Deserialize)]
pub struct WireError {
    /// OpenAI / Google style `error` object.
    #[serde(default)]
    pub error: Lenient<WireErrorDetail>,
    /// Top-level `code`.
    #[serde(default)]
    pub code: Lenient<String>,
    /// Top-level `type`.
    #[serde(default, rename = "type")]
    pub kind: Lenient<String>,
}

/// The `error` object of an error answer.
#[derive(Debug, Default, Deserialize)]
pub struct WireErrorDetail {
    /// `error.type`.
    #[serde(default, rename = "type")]
    pub kind: Lenient<String>,
    /// `error.code` (a string for OpenAI, a number for Google: then absent).
    #[serde(default)]
    pub code: Lenient<String>,
    /// Google's `error.details[]`.
    #[serde(default)]
    pub details: Lenient<Vec<Lenient<WireErrorInfo>>>,
}

/// One of Google's `error.details[]`.
#[derive(Debug, Default, Deserialize)]
pub struct WireErrorInfo {
    /// `ErrorInfo.reason`, e.g. `API_KEY_INVALID`.
    #[serde(default)]
    pub reason: Lenient<String>,
    /// `RetryInfo.retryDelay`, e.g. `"58s"`.
    #[serde(default, rename = "retryDelay")]
    pub retry_delay: Lenient<String>,
}

impl WireErrorDetail {
    /// The entries of `details` that are objects.
    pub fn details(&self) -> impl Iterator<Item = &WireErrorInfo> {
        self.details.get().into_iter().flatten().filter_map(Lenient::get)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zeros(n: usize) -> String {
        vec!["0"; n].join(",")
    }

    #[test]
    fn a_page_holds_at_most_the_model_cap_while_it_is_read() {
        let full: WirePage = serde_json::from_str(&format!(r#"{{"data":[{}]}}"#, zeros(MAX_MODELS))).unwrap();
        assert_eq!(full.items("data").map(<[Entry]>::len), Some(MAX_MODELS));
        // One more, and the list is unreadable (the rest is skipped unkept).
        let over: WirePage = serde_json::from_str(&format!(r#"{{"data":[{}]}}"#, zeros(MAX_MODELS + 1))).unwrap();
        assert_eq!(over.items("data").map(<[Entry]>::len), None);
        // A bare array (Together) fails as a whole.
        assert!(serde_json::from_str::<WireBody>(&format!("[{}]", zeros(MAX_MODELS))).is_ok());
        assert!(serde_json::from_str::<WireBody>(&format!("[{}]", zeros(MAX_MODELS + 1))).is_err());
    }

    #[test]
    fn lenient_fields_skip_what_has_another_type() {
        let page: WirePage =
            serde_json::from_str(r#"{"data":[{"id":5,"name":{"x":[1,2]},"active":"yes"},7,{"id":"m","context_window":3}],"has_more":true,"extra":{"deep":[[[]]]}}"#)
                .unwrap();
        let items = page.items("data").unwrap();
        assert_eq!(items.len(), 3);
        assert_eq!(items[0].get().unwrap().text("id"), None);
        assert_eq!(items[0].get().unwrap().text("name"), None);
        assert_eq!(items[0].get().unwrap().flag("active"), None);
        assert!(items[1].get().is_none());
        assert_eq!(items[2].get().unwrap().text("id"), Some("m"));
        assert_eq!(items[2].get().unwrap().number("context_window"), Some(3));
        assert_eq!(page.flag("has_more"), Some(true));
        let page: WirePage = serde_json::from_str(r#"{"data":"nope"}"#).unwrap();
        assert!(page.items("data").is_none());
        assert!(serde_json::from_str::<WireBody>("\"text\"").is_err());
    }
}
