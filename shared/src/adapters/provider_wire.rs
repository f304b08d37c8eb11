//! Provider answers as typed structs (serde derive), read straight from the
//! body bytes: fields no provider's entry names are skipped without being
//! kept, so a page costs about its own size in memory, never a generic JSON
//! tree several times larger.
//!
//! Providers are data ([`ListShape`](crate::domain::provider::ListShape)
//! names fields), so the structs carry every field some provider uses and
//! [`WireModel::field`] picks by name. Reading is as forgiving as the
//! providers need: a field of an unexpected type counts as absent, and a
//! list entry that is not an object is skipped ([`Lenient`]).

use std::fmt;
use std::marker::PhantomData;

use serde::Deserialize;
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

/// One entry of a model list, with every field some provider's shape names.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
#[allow(non_snake_case)]
pub struct WireModel {
    id: Lenient<String>,
    name: Lenient<String>,
    display_name: Lenient<String>,
    displayName: Lenient<String>,
    owned_by: Lenient<String>,
    organization: Lenient<String>,
    context_window: Lenient<u64>,
    max_context_length: Lenient<u64>,
    context_length: Lenient<u64>,
    inputTokenLimit: Lenient<u64>,
    outputTokenLimit: Lenient<u64>,
    active: Lenient<bool>,
}

impl WireModel {
    /// The text field a shape names (`None` for a name no provider uses).
    pub fn text(&self, field: &str) -> Option<&str> {
        let value = match field {
            "id" => &self.id,
            "name" => &self.name,
            "display_name" => &self.display_name,
            "displayName" => &self.displayName,
            "owned_by" => &self.owned_by,
            "organization" => &self.organization,
            _ => return None,
        };
        value.get().map(String::as_str)
    }

    /// The number field a shape names.
    pub fn number(&self, field: &str) -> Option<u64> {
        let value = match field {
            "context_window" => &self.context_window,
            "max_context_length" => &self.max_context_length,
            "context_length" => &self.context_length,
            "inputTokenLimit" => &self.inputTokenLimit,
            "outputTokenLimit" => &self.outputTokenLimit,
            _ => return None,
        };
        value.get().copied()
    }

    /// The flag field a shape names.
    pub fn flag(&self, field: &str) -> Option<bool> {
        match field {
            "active" => self.active.get().copied(),
            _ => None,
        }
    }
}

/// A list entry: a model when it is an object, else skipped.
pub type Entry = Lenient<WireModel>;

/// One page of a model list (an object), with every list and paging field
/// some provider uses.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
#[allow(non_snake_case)]
pub struct WirePage {
    data: Lenient<Vec<Entry>>,
    models: Lenient<Vec<Entry>>,
    next_page_token: Lenient<String>,
    nextPageToken: Lenient<String>,
    has_more: Lenient<bool>,
    last_id: Lenient<String>,
}

impl WirePage {
    /// The entries under the field a shape names (`None`: absent or no array).
    pub fn items(&self, field: &str) -> Option<&[Entry]> {
        match field {
            "data" => self.data.get(),
            "models" => self.models.get(),
            _ => None,
        }
        .map(Vec::as_slice)
    }

    /// A paging text field.
    pub fn text(&self, field: &str) -> Option<&str> {
        match field {
            "next_page_token" => &self.next_page_token,
            "nextPageToken" => &self.nextPageToken,
            "last_id" => &self.last_id,
            _ => return None,
        }
        .get()
        .map(String::as_str)
    }

    /// A paging flag.
    pub fn flag(&self, field: &str) -> Option<bool> {
        match field {
            "has_more" => self.has_more.get().copied(),
            _ => None,
        }
    }
}

/// A page as it came: an object (most providers) or a bare array (Together).
#[derive(Debug)]
pub enum WireBody {
    /// `{ "data": [...], ... }`.
    Object(WirePage),
    /// `[ ... ]`.
    Array(Vec<Entry>),
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
                Vec::deserialize(SeqAccessDeserializer::new(seq)).map(WireBody::Array)
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
