//! Decoding state entries to JSON without the guest: the SDK records each state type's
//! serde-reflection format, and this drives bincode's own serde deserializer with it.
//!
//! bincode is not self-describing, so the format says which `deserialize_*` to call at each
//! step; the wire details (varints, lengths) stay bincode's.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, EnumAccess, MapAccess, SeqAccess, VariantAccess, Visitor};
use serde_json::{Map, Value, json};
use serde_reflection::{ContainerFormat, Format, Named, Registry, VariantFormat};

/// A type's format as the SDK records it (`TypeInfo::schema`).
#[derive(serde::Deserialize)]
struct Schema {
    format: Format,
    registry: Registry,
}

/// Decodes one bincode-encoded value described by `schema` (JSON); `None` if the schema is
/// empty or does not match the bytes.
pub fn decode(schema: &str, bytes: &[u8]) -> Option<Value> {
    if schema.is_empty() {
        return None;
    }
    let schema: Schema = serde_json::from_str(schema).ok()?;
    let seed = Seed { format: &schema.format, registry: &schema.registry };
    wasmflow_types::codec::decode_seed(seed, bytes).ok()
}

#[derive(Clone, Copy)]
struct Seed<'a> {
    format: &'a Format,
    registry: &'a Registry,
}

impl<'a> Seed<'a> {
    fn with(self, format: &'a Format) -> Seed<'a> {
        Seed { format, registry: self.registry }
    }
}

fn leak_names<T>(fields: &[Named<T>]) -> &'static [&'static str] {
    // Inspection is a one-shot CLI command; bincode only needs the field count.
    Box::leak(fields.iter().map(|f| &*Box::leak(f.name.clone().into_boxed_str())).collect::<Vec<_>>().into_boxed_slice())
}

impl<'de> DeserializeSeed<'de> for Seed<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        let v = Scalar;
        match self.format {
            Format::Unit => d.deserialize_unit(v),
            Format::Bool => d.deserialize_bool(v),
            Format::I8 => d.deserialize_i8(v),
            Format::I16 => d.deserialize_i16(v),
            Format::I32 => d.deserialize_i32(v),
            Format::I64 => d.deserialize_i64(v),
            Format::I128 => d.deserialize_i128(v),
            Format::U8 => d.deserialize_u8(v),
            Format::U16 => d.deserialize_u16(v),
            Format::U32 => d.deserialize_u32(v),
            Format::U64 => d.deserialize_u64(v),
            Format::U128 => d.deserialize_u128(v),
            Format::F32 => d.deserialize_f32(v),
            Format::F64 => d.deserialize_f64(v),
            Format::Char => d.deserialize_char(v),
            Format::Str => d.deserialize_string(v),
            Format::Bytes => d.deserialize_byte_buf(v),
            Format::Option(inner) => d.deserialize_option(OptionV(self.with(inner))),
            Format::Seq(inner) => d.deserialize_seq(SeqV(vec![], Some(self.with(inner)))),
            Format::Map { key, value } => d.deserialize_map(MapV(self.with(key), self.with(value))),
            Format::Tuple(items) => d.deserialize_tuple(items.len(), SeqV(items.iter().map(|f| self.with(f)).collect(), None)),
            Format::TupleArray { content, size } => d.deserialize_tuple(*size, SeqV(vec![self.with(content); *size], None)),
            Format::TypeName(name) => {
                let container = self.registry.get(name).ok_or_else(|| de::Error::custom(format!("unknown type {name}")))?;
                let name: &'static str = Box::leak(name.clone().into_boxed_str());
                match container {
                    ContainerFormat::UnitStruct => d.deserialize_unit_struct(name, v),
                    ContainerFormat::NewTypeStruct(f) => d.deserialize_newtype_struct(name, NewtypeV(self.with(f))),
                    ContainerFormat::TupleStruct(fs) => d.deserialize_tuple_struct(name, fs.len(), SeqV(fs.iter().map(|f| self.with(f)).collect(), None)),
                    ContainerFormat::Struct(fields) => d.deserialize_struct(name, leak_names(fields), StructV(self, fields)),
                    ContainerFormat::Enum(variants) => d.deserialize_enum(name, &[], EnumV(self, variants)),
                }
            }
            Format::Variable(_) => Err(de::Error::custom("incomplete format")),
        }
    }
}

/// Visits scalars.
struct Scalar;

impl<'de> Visitor<'de> for Scalar {
    type Value = Value;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a value")
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(json!(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(json!(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(json!(v))
    }
    fn visit_i128<E>(self, v: i128) -> Result<Value, E> {
        Ok(json!(v.to_string()))
    }
    fn visit_u128<E>(self, v: u128) -> Result<Value, E> {
        Ok(json!(v.to_string()))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(json!(v))
    }
    fn visit_char<E>(self, v: char) -> Result<Value, E> {
        Ok(json!(v.to_string()))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(json!(v))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(json!(v))
    }
    fn visit_bytes<E>(self, v: &[u8]) -> Result<Value, E> {
        Ok(json!(v))
    }
    fn visit_byte_buf<E>(self, v: Vec<u8>) -> Result<Value, E> {
        Ok(json!(v))
    }
}

struct OptionV<'a>(Seed<'a>);

impl<'de> Visitor<'de> for OptionV<'_> {
    type Value = Value;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an option")
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        self.0.deserialize(d)
    }
}

struct NewtypeV<'a>(Seed<'a>);

impl<'de> Visitor<'de> for NewtypeV<'_> {
    type Value = Value;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a newtype")
    }
    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        self.0.deserialize(d)
    }
}

/// A sequence: either every element has format `.1`, or the elements have the formats `.0`.
struct SeqV<'a>(Vec<Seed<'a>>, Option<Seed<'a>>);

impl<'de> Visitor<'de> for SeqV<'_> {
    type Value = Value;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a sequence")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        match self.1 {
            Some(each) => {
                while let Some(v) = seq.next_element_seed(each)? {
                    out.push(v);
                }
            }
            None => {
                for s in self.0 {
                    out.push(seq.next_element_seed(s)?.ok_or_else(|| de::Error::custom("tuple too short"))?);
                }
            }
        }
        Ok(Value::Array(out))
    }
}

struct MapV<'a>(Seed<'a>, Seed<'a>);

impl<'de> Visitor<'de> for MapV<'_> {
    type Value = Value;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a map")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        // JSON keys are strings: a map is shown as a list of [key, value] pairs.
        let mut out = Vec::new();
        while let Some(k) = map.next_key_seed(self.0)? {
            let v = map.next_value_seed(self.1)?;
            out.push(json!([k, v]));
        }
        Ok(Value::Array(out))
    }
}

struct StructV<'a>(Seed<'a>, &'a [Named<Format>]);

impl<'de> Visitor<'de> for StructV<'_> {
    type Value = Value;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a struct")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        for field in self.1 {
            let v = seq.next_element_seed(self.0.with(&field.value))?.ok_or_else(|| de::Error::custom("struct too short"))?;
            out.insert(field.name.clone(), v);
        }
        Ok(Value::Object(out))
    }
}

struct EnumV<'a>(Seed<'a>, &'a BTreeMap<u32, Named<VariantFormat>>);

impl<'de> Visitor<'de> for EnumV<'_> {
    type Value = Value;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an enum")
    }
    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<Value, A::Error> {
        let (index, variant): (u32, _) = data.variant()?;
        let named = self.1.get(&index).ok_or_else(|| de::Error::custom(format!("unknown variant {index}")))?;
        let seed = self.0;
        let value = match &named.value {
            VariantFormat::Unit => {
                variant.unit_variant()?;
                return Ok(json!(named.name));
            }
            VariantFormat::NewType(f) => variant.newtype_variant_seed(seed.with(f))?,
            VariantFormat::Tuple(fs) => variant.tuple_variant(fs.len(), SeqV(fs.iter().map(|f| seed.with(f)).collect(), None))?,
            VariantFormat::Struct(fields) => variant.struct_variant(leak_names(fields), StructV(seed, fields))?,
            VariantFormat::Variable(_) => return Err(de::Error::custom("incomplete format")),
        };
        Ok(json!({ named.name.clone(): value }))
    }
}

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};
    use serde_reflection::{Tracer, TracerConfig};

    use super::*;

    fn schema_of<T: for<'de> Deserialize<'de>>() -> String {
        let mut tracer = Tracer::new(TracerConfig::default());
        let (format, _) = tracer.trace_simple_type::<T>().unwrap();
        json!({ "format": format, "registry": tracer.registry().unwrap() }).to_string()
    }

    fn encode<T: Serialize>(v: &T) -> Vec<u8> {
        wasmflow_types::codec::encode(v).unwrap()
    }

    #[derive(Serialize, Deserialize)]
    struct Offsets {
        topic: String,
        partition: i32,
        offset: i64,
        note: Option<String>,
    }

    #[derive(Serialize, Deserialize)]
    enum Kind {
        Plain,
        Weighted(u32),
    }

    #[test]
    fn decodes_tuples_structs_enums_and_options() {
        let t = ("orders".to_string(), 3i32, -915623761775i64);
        assert_eq!(decode(&schema_of::<(String, i32, i64)>(), &encode(&t)), Some(json!(["orders", 3, -915623761775i64])));
        let s = Offsets { topic: "t".into(), partition: 1, offset: 42, note: None };
        assert_eq!(decode(&schema_of::<Offsets>(), &encode(&s)), Some(json!({"topic": "t", "partition": 1, "offset": 42, "note": null})));
        // serde-reflection traces an enum completely only at the top level.
        assert_eq!(decode(&schema_of::<Kind>(), &encode(&Kind::Weighted(7))), Some(json!({"Weighted": 7})));
        assert_eq!(decode(&schema_of::<Kind>(), &encode(&Kind::Plain)), Some(json!("Plain")));
        assert_eq!(decode(&schema_of::<u64>(), &encode(&325u64)), Some(json!(325)));
    }

    #[test]
    fn mismatched_bytes_and_empty_schemas_give_none() {
        assert_eq!(decode(&schema_of::<u64>(), &encode(&"text")), None);
        assert_eq!(decode("", b"\x01"), None);
    }
}
