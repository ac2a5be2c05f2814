//! Loading typed configuration: a TOML file, then `MDM_` environment variables on top.
//!
//! `MDM_SERVER__LISTEN=0.0.0.0:8080` sets `listen` in `[server]`: the prefix is dropped,
//! `__` separates levels, names are lower-cased. Values are taken as text and converted
//! to whatever the field needs (a number, a boolean, a list written as TOML). Unknown keys,
//! in the file or the environment, are errors. `MDM_CONFIG` (the file's path),
//! `MDM_SERVER`, `MDM_TOKEN` and `MDM_TENANT` (the admin command line's) and `MDM_TEST_*`
//! (the test harness) are not configuration keys.

use std::path::Path;

use serde::de::{self, DeserializeOwned, IntoDeserializer, Visitor};
use toml::{Table, Value};

/// Environment variables with this prefix override the file.
pub const ENV_PREFIX: &str = "MDM_";

/// `MDM_` variables that are not configuration keys.
const RESERVED: [&str; 4] = ["CONFIG", "SERVER", "TOKEN", "TENANT"];

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the configuration file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("the configuration file {path} is not valid TOML: {message}")]
    Syntax { path: String, message: String },
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

/// Reads `file` (if given) and the environment into `T`.
pub fn load<T: DeserializeOwned>(
    file: Option<&Path>,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<T, ConfigError> {
    let mut root = match file {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.display().to_string(),
                source,
            })?;
            text.parse::<Table>().map_err(|e| ConfigError::Syntax {
                path: path.display().to_string(),
                message: e.to_string(),
            })?
        }
        None => Table::new(),
    };
    for (name, value) in env {
        let Some(key) = name.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        if RESERVED.contains(&key) || key.starts_with("TEST_") {
            continue;
        }
        let path: Vec<String> = key.split("__").map(str::to_ascii_lowercase).collect();
        set_path(&mut root, &path, Value::String(value))
            .map_err(|e| ConfigError::Invalid(format!("{name}: {e}")))?;
    }
    serde_path_to_error::deserialize(Lenient(Value::Table(root))).map_err(|e| {
        let path = e.path().to_string();
        let message = e.into_inner().to_string();
        if path == "." {
            ConfigError::Invalid(message)
        } else {
            ConfigError::Invalid(format!("{path}: {message}"))
        }
    })
}

fn set_path(table: &mut Table, path: &[String], value: Value) -> Result<(), String> {
    match path {
        [] => Err("empty key".into()),
        [last] if !last.is_empty() => {
            table.insert(last.clone(), value);
            Ok(())
        }
        [first, rest @ ..] if !first.is_empty() && !rest.is_empty() => {
            let entry = table
                .entry(first.clone())
                .or_insert_with(|| Value::Table(Table::new()));
            match entry {
                Value::Table(inner) => set_path(inner, rest, value),
                _ => Err(format!("`{first}` is not a section")),
            }
        }
        _ => Err("empty key segment".into()),
    }
}

/// A deserializer over a TOML value that converts text into the numbers, booleans and
/// lists a field asks for, so that environment variables (always text) can set them.
struct Lenient(Value);

#[derive(Debug)]
struct LenientError(String);

impl std::fmt::Display for LenientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for LenientError {}

impl de::Error for LenientError {
    fn custom<T: std::fmt::Display>(msg: T) -> Self {
        Self(msg.to_string())
    }
}

macro_rules! parse_text {
    ($($method:ident => $visit:ident: $ty:ty),+ $(,)?) => {
        $(
            fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
                match self.0 {
                    Value::String(text) => {
                        let parsed: $ty = text.trim().parse().map_err(|_| {
                            LenientError(format!("`{text}` is not a valid {}", stringify!($ty)))
                        })?;
                        visitor.$visit(parsed)
                    }
                    other => other.$method(visitor).map_err(|e| LenientError(e.to_string())),
                }
            }
        )+
    };
}

impl<'de> de::Deserializer<'de> for Lenient {
    type Error = LenientError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        match self.0 {
            Value::Table(table) => visitor.visit_map(LenientMap::new(table)),
            Value::Array(items) => visitor.visit_seq(LenientSeq(items.into_iter())),
            other => other
                .deserialize_any(visitor)
                .map_err(|e| LenientError(e.to_string())),
        }
    }

    parse_text! {
        deserialize_bool => visit_bool: bool,
        deserialize_u8 => visit_u8: u8,
        deserialize_u16 => visit_u16: u16,
        deserialize_u32 => visit_u32: u32,
        deserialize_u64 => visit_u64: u64,
        deserialize_i8 => visit_i8: i8,
        deserialize_i16 => visit_i16: i16,
        deserialize_i32 => visit_i32: i32,
        deserialize_i64 => visit_i64: i64,
        deserialize_f32 => visit_f32: f32,
        deserialize_f64 => visit_f64: f64,
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        // Only environment text is converted; in the file, a number is not a string.
        match self.0 {
            Value::String(text) => visitor.visit_string(text),
            other => Err(LenientError(format!(
                "expected a string, found {}",
                other.type_str()
            ))),
        }
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        self.deserialize_string(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        visitor.visit_some(self)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        match self.0 {
            // A list set from the environment: TOML array syntax, or comma-separated.
            Value::String(text) => {
                let items = match format!("v = {text}").parse::<Table>() {
                    Ok(mut t) => match t.remove("v") {
                        Some(Value::Array(items)) => items,
                        _ => split_list(&text),
                    },
                    Err(_) => split_list(&text),
                };
                visitor.visit_seq(LenientSeq(items.into_iter()))
            }
            Value::Array(items) => visitor.visit_seq(LenientSeq(items.into_iter())),
            other => Err(LenientError(format!(
                "expected a list, found {}",
                other.type_str()
            ))),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.deserialize_map(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        match self.0 {
            Value::Table(table) => visitor.visit_map(LenientMap::new(table)),
            other => Err(LenientError(format!(
                "expected a section, found {}",
                other.type_str()
            ))),
        }
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.0
            .deserialize_enum(name, variants, visitor)
            .map_err(|e| LenientError(e.to_string()))
    }

    serde::forward_to_deserialize_any! {
        i128 u128 char bytes byte_buf unit unit_struct tuple tuple_struct identifier ignored_any
    }
}

fn split_list(text: &str) -> Vec<Value> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| Value::String(s.to_owned()))
        .collect()
}

struct LenientSeq(std::vec::IntoIter<Value>);

impl<'de> de::SeqAccess<'de> for LenientSeq {
    type Error = LenientError;

    fn next_element_seed<T: de::DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Self::Error> {
        self.0
            .next()
            .map(|v| seed.deserialize(Lenient(v)))
            .transpose()
    }
}

struct LenientMap {
    entries: toml::map::IntoIter<String, Value>,
    value: Option<Value>,
}

impl LenientMap {
    fn new(table: Table) -> Self {
        Self {
            entries: table.into_iter(),
            value: None,
        }
    }
}

impl<'de> de::MapAccess<'de> for LenientMap {
    type Error = LenientError;

    fn next_key_seed<K: de::DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Self::Error> {
        match self.entries.next() {
            Some((key, value)) => {
                self.value = Some(value);
                let key: de::value::StringDeserializer<LenientError> = key.into_deserializer();
                seed.deserialize(key).map(Some)
            }
            None => Ok(None),
        }
    }

    fn next_value_seed<V: de::DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, Self::Error> {
        let value = self
            .value
            .take()
            .ok_or_else(|| LenientError("a value without a key".into()))?;
        seed.deserialize(Lenient(value))
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Root {
        #[serde(default)]
        server: Server,
        #[serde(default)]
        name: Option<String>,
    }

    #[derive(Debug, Deserialize, PartialEq, Default)]
    #[serde(deny_unknown_fields)]
    struct Server {
        #[serde(default)]
        listen: String,
        #[serde(default)]
        workers: u32,
        #[serde(default)]
        tls: bool,
        #[serde(default)]
        only: Vec<String>,
        #[serde(default)]
        token: Option<String>,
    }

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn environment_overrides_the_file() {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        writeln!(file, "[server]\nlisten = \"127.0.0.1:1\"\nworkers = 2").unwrap();
        let root: Root = load(
            Some(file.path()),
            env(&[
                ("MDM_SERVER__LISTEN", "0.0.0.0:8080"),
                ("MDM_SERVER__TLS", "true"),
                ("MDM_SERVER__ONLY", "inventory, dispatch"),
                ("MDM_SERVER__TOKEN", "123456"),
                ("MDM_NAME", "x"),
                ("MDM_CONFIG", "ignored"),
                ("MDM_SERVER", "http://127.0.0.1:8080"),
                ("MDM_TOKEN", "mdm_secret"),
                ("MDM_TEST_DATABASE_URL", "ignored"),
                ("HOME", "/root"),
            ]),
        )
        .unwrap();
        assert_eq!(root.server.listen, "0.0.0.0:8080");
        assert_eq!(root.server.workers, 2);
        assert!(root.server.tls);
        assert_eq!(root.server.only, ["inventory", "dispatch"]);
        // A numeric-looking secret stays text.
        assert_eq!(root.server.token.as_deref(), Some("123456"));
        assert_eq!(root.name.as_deref(), Some("x"));
    }

    #[test]
    fn numbers_from_the_environment_are_checked() {
        let err = load::<Root>(None, env(&[("MDM_SERVER__WORKERS", "many")])).unwrap_err();
        assert!(
            err.to_string().contains("`many` is not a valid u32"),
            "{err}"
        );
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let err = load::<Root>(None, env(&[("MDM_SERVER__LISTNE", "x")])).unwrap_err();
        assert!(err.to_string().contains("listne"), "{err}");
        let err = load::<Root>(None, env(&[("MDM_SERVR__LISTEN", "x")])).unwrap_err();
        assert!(err.to_string().contains("servr"), "{err}");
        let mut file = tempfile::NamedTempFile::new().unwrap();
        writeln!(file, "[server]\nport = 1").unwrap();
        assert!(load::<Root>(Some(file.path()), env(&[])).is_err());
    }

    #[test]
    fn syntax_errors_name_the_file() {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        writeln!(file, "[server\nlisten = ").unwrap();
        let err = load::<Root>(Some(file.path()), env(&[])).unwrap_err();
        assert!(matches!(err, ConfigError::Syntax { .. }), "{err}");
    }

    #[test]
    fn a_missing_file_is_an_error() {
        let err = load::<Root>(Some(Path::new("/nonexistent/mdm.toml")), env(&[])).unwrap_err();
        assert!(matches!(err, ConfigError::Read { .. }));
    }
}
