//! Marks every optional property of the spec `nullable`. poem-openapi leaves an `Option<T>` field out
//! of `required` but does not say it may be `null`, while the server writes `null` for `None` (and
//! reads `null` as absent): without this, every such response contradicts the schema for validators
//! and generated clients. OpenAPI 3.0 ignores the siblings of a `$ref`, so a reference becomes
//! `{"allOf": [{"$ref": …}], "nullable": true}`.

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};

/// A JSON value whose objects keep their keys in order (the workspace's `serde_json::Value` sorts
/// them), so the processed spec reads in poem-openapi's order: `openapi`, `info`, `paths`, ….
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Json {
    Null,
    Bool(bool),
    Number(serde_json::Number),
    String(String),
    Array(Vec<Json>),
    Object(Vec<(String, Json)>),
}

impl Json {
    #[cfg(test)]
    fn get(&self, key: &str) -> Option<&Json> {
        match self {
            Json::Object(entries) => entries.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// Sets `key`, in place when it exists, else at the end.
    fn set(entries: &mut Vec<(String, Json)>, key: &str, value: Json) {
        match entries.iter_mut().find(|(k, _)| k == key) {
            Some((_, v)) => *v = value,
            None => entries.push((key.to_string(), value)),
        }
    }
}

/// Every optional property under the document's schemas (components, request bodies, responses,
/// parameters) becomes nullable.
pub(super) fn mark_optional_properties(doc: &mut Json) {
    match doc {
        Json::Object(entries) => {
            for (key, value) in entries {
                match key.as_str() {
                    "schema" => schema(value),
                    "schemas" => {
                        if let Json::Object(named) = value {
                            named.iter_mut().for_each(|(_, s)| schema(s));
                        }
                    }
                    // Instance data, not schemas.
                    "example" | "examples" | "default" => {}
                    _ => mark_optional_properties(value),
                }
            }
        }
        Json::Array(items) => items.iter_mut().for_each(mark_optional_properties),
        _ => {}
    }
}

/// One schema and the schemas inside it (properties, `items`, `allOf`, …).
fn schema(s: &mut Json) {
    let Json::Object(entries) = s else { return };
    let required: Vec<String> = match entries.iter().find(|(k, _)| k == "required") {
        Some((_, Json::Array(names))) => names
            .iter()
            .filter_map(|n| match n {
                Json::String(n) => Some(n.clone()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    for (key, value) in entries.iter_mut() {
        match (key.as_str(), value) {
            ("properties", Json::Object(props)) => {
                for (name, prop) in props.iter_mut() {
                    if !required.contains(name) {
                        make_nullable(prop);
                    }
                    schema(prop);
                }
            }
            ("items" | "additionalProperties" | "not", inner @ Json::Object(_)) => schema(inner),
            ("allOf" | "anyOf" | "oneOf", Json::Array(parts)) => parts.iter_mut().for_each(schema),
            _ => {}
        }
    }
}

fn make_nullable(prop: &mut Json) {
    let Json::Object(entries) = prop else { return };
    if let Some(at) = entries.iter().position(|(k, _)| k == "$ref") {
        let (_, reference) = entries.remove(at);
        let wrapped = Json::Object(vec![("$ref".to_string(), reference)]);
        entries.insert(at, ("allOf".to_string(), Json::Array(vec![wrapped])));
    }
    Json::set(entries, "nullable", Json::Bool(true));
}

/// Whether `prop` admits `null` as written by [`make_nullable`] (used by the tests).
#[cfg(test)]
fn is_nullable(prop: &Json) -> bool {
    prop.get("nullable") == Some(&Json::Bool(true)) && prop.get("$ref").is_none()
}

impl Serialize for Json {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Json::Null => serializer.serialize_unit(),
            Json::Bool(b) => serializer.serialize_bool(*b),
            Json::Number(n) => n.serialize(serializer),
            Json::String(s) => serializer.serialize_str(s),
            Json::Array(items) => {
                let mut seq = serializer.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(item)?;
                }
                seq.end()
            }
            Json::Object(entries) => {
                let mut map = serializer.serialize_map(Some(entries.len()))?;
                for (k, v) in entries {
                    map.serialize_entry(k, v)?;
                }
                map.end()
            }
        }
    }
}

impl<'de> Deserialize<'de> for Json {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(JsonVisitor)
    }
}

struct JsonVisitor;

impl<'de> Visitor<'de> for JsonVisitor {
    type Value = Json;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E>(self) -> Result<Json, E> {
        Ok(Json::Null)
    }

    fn visit_none<E>(self) -> Result<Json, E> {
        Ok(Json::Null)
    }

    fn visit_bool<E>(self, v: bool) -> Result<Json, E> {
        Ok(Json::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Json, E> {
        Ok(Json::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Json, E> {
        Ok(Json::Number(v.into()))
    }

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Json, E> {
        serde_json::Number::from_f64(v).map(Json::Number).ok_or_else(|| E::custom("a non-finite number"))
    }

    fn visit_str<E>(self, v: &str) -> Result<Json, E> {
        Ok(Json::String(v.to_string()))
    }

    fn visit_string<E>(self, v: String) -> Result<Json, E> {
        Ok(Json::String(v))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Json, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Json::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Json, A::Error> {
        let mut entries = Vec::with_capacity(map.size_hint().unwrap_or(0));
        while let Some((k, v)) = map.next_entry::<String, Json>()? {
            entries.push((k, v));
        }
        Ok(Json::Object(entries))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Json {
        serde_json::from_str(text).expect("test JSON")
    }

    fn marked(text: &str) -> Json {
        let mut doc = parse(text);
        mark_optional_properties(&mut doc);
        doc
    }

    #[test]
    fn optional_properties_become_nullable_and_required_ones_do_not() {
        let doc = marked(
            r##"{"components": {"schemas": {"Lead": {"type": "object", "required": ["id"],
                "properties": {"id": {"type": "integer"}, "email": {"type": "string", "format": "email"}}}}}}"##,
        );
        let props = doc.get("components").and_then(|c| c.get("schemas")).and_then(|s| s.get("Lead"));
        let props = props.and_then(|l| l.get("properties")).expect("properties");
        assert!(is_nullable(props.get("email").expect("email")));
        assert_eq!(props.get("id"), Some(&parse(r#"{"type": "integer"}"#)));
    }

    #[test]
    fn a_reference_is_wrapped_keeping_its_description() {
        let doc = marked(
            r##"{"components": {"schemas": {"Lead": {"type": "object", "properties": {
                "budget": {"$ref": "#/components/schemas/Budget"},
                "stage": {"allOf": [{"$ref": "#/components/schemas/Stage"}], "description": "Where it is"}}}}}}"##,
        );
        let props = doc.get("components").and_then(|c| c.get("schemas")).and_then(|s| s.get("Lead"));
        let props = props.and_then(|l| l.get("properties")).expect("properties");
        assert_eq!(
            props.get("budget"),
            Some(&parse(r##"{"allOf": [{"$ref": "#/components/schemas/Budget"}], "nullable": true}"##))
        );
        assert_eq!(
            props.get("stage"),
            Some(&parse(
                r##"{"allOf": [{"$ref": "#/components/schemas/Stage"}], "description": "Where it is", "nullable": true}"##
            ))
        );
    }

    #[test]
    fn inline_objects_in_items_and_bodies_are_reached_and_examples_are_left_alone() {
        let doc = marked(
            r##"{"paths": {"/x": {"post": {"requestBody": {"content": {"application/json": {"schema": {
                "type": "object", "properties": {"rows": {"type": "array", "items": {"type": "object",
                "required": ["a"], "properties": {"a": {"type": "string"}, "b": {"type": "string"}}}}}},
                "example": {"properties": {"c": {"type": "string"}}}}}}}}}}"##,
        );
        let media = doc
            .get("paths")
            .and_then(|p| p.get("/x"))
            .and_then(|p| p.get("post"))
            .and_then(|o| o.get("requestBody"))
            .and_then(|b| b.get("content"))
            .and_then(|c| c.get("application/json"))
            .expect("media type");
        let rows = media.get("schema").and_then(|s| s.get("properties")).and_then(|p| p.get("rows")).expect("rows");
        assert!(is_nullable(rows));
        let item = rows.get("items").and_then(|i| i.get("properties")).expect("item properties");
        assert!(is_nullable(item.get("b").expect("b")));
        assert!(!is_nullable(item.get("a").expect("a")));
        assert_eq!(media.get("example"), Some(&parse(r#"{"properties": {"c": {"type": "string"}}}"#)));
    }

    #[test]
    fn key_order_survives_the_round_trip() {
        let text = r#"{"openapi": "3.0.0", "info": {"title": "t"}, "paths": {"/b": {}, "/a": {}}, "n": [1, -2, 0.5, null, true]}"#;
        let doc = parse(text);
        let out = serde_json::to_string(&doc).expect("serialises");
        assert_eq!(
            out,
            r#"{"openapi":"3.0.0","info":{"title":"t"},"paths":{"/b":{},"/a":{}},"n":[1,-2,0.5,null,true]}"#
        );
    }
}
