//! tonic [`Codec`]s for our serde messages: gRPC carries them as opaque messages, so the
//! protocol is the Rust types in [`super::protocol`], with no `.proto` file or code generator
//! to keep in step.
//!
//! Two encodings: data frames (batches of records) in the one bincode encoding
//! ([`wasmflow_types::codec`]), compact and fast; control messages in JSON, because they carry
//! checkpoint metadata types whose optional fields are left out when empty — which a
//! self-describing format reads back and bincode cannot — and they are few and small.

use std::marker::PhantomData;

use bytes::{Buf, BufMut};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tonic::Status;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};

/// An encoding of serde values.
pub trait Format: Send + 'static {
    fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, String>;
    fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String>;
}

/// The bincode encoding of state files and batches.
pub struct Bincode;

impl Format for Bincode {
    fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, String> {
        wasmflow_types::codec::encode(value).map_err(|e| e.to_string())
    }

    fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
        wasmflow_types::codec::decode(bytes).map_err(|e| e.to_string())
    }
}

/// JSON.
pub struct Json;

impl Format for Json {
    fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, String> {
        serde_json::to_vec(value).map_err(|e| e.to_string())
    }

    fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
        serde_json::from_slice(bytes).map_err(|e| e.to_string())
    }
}

/// A codec that encodes `E` and decodes `D` in format `F`.
pub struct Framed<F, E, D>(PhantomData<fn(F, E) -> D>);

impl<F, E, D> Default for Framed<F, E, D> {
    fn default() -> Self {
        Framed(PhantomData)
    }
}

impl<F: Format, E: Serialize + Send + 'static, D: DeserializeOwned + Send + 'static> Codec for Framed<F, E, D> {
    type Encode = E;
    type Decode = D;
    type Encoder = FramedEncoder<F, E>;
    type Decoder = FramedDecoder<F, D>;

    fn encoder(&mut self) -> Self::Encoder {
        FramedEncoder(PhantomData)
    }

    fn decoder(&mut self) -> Self::Decoder {
        FramedDecoder(PhantomData)
    }
}

pub struct FramedEncoder<F, E>(PhantomData<fn(F, E)>);

impl<F: Format, E: Serialize> Encoder for FramedEncoder<F, E> {
    type Item = E;
    type Error = Status;

    fn encode(&mut self, item: E, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        let bytes = F::encode(&item).map_err(|e| Status::internal(format!("cannot encode a cluster message: {e}")))?;
        dst.put_slice(&bytes);
        Ok(())
    }
}

pub struct FramedDecoder<F, D>(PhantomData<fn(F) -> D>);

impl<F: Format, D: DeserializeOwned> Decoder for FramedDecoder<F, D> {
    type Item = D;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<D>, Status> {
        let bytes = src.copy_to_bytes(src.remaining());
        let item = F::decode(&bytes).map_err(|e| Status::invalid_argument(format!("cannot decode a cluster message: {e}")))?;
        Ok(Some(item))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::StateFileRef;
    use crate::cluster::protocol::FromWorker;
    use crate::runtime::subtask::Event;

    /// An ack's state file reference leaves out its empty optional fields when encoded; the
    /// control codec must still read it back (bincode cannot).
    #[test]
    fn control_messages_round_trip_with_omitted_fields() {
        let file = StateFileRef::new("op/0.state".into(), b"state");
        let tag = wasmflow_types::SubtaskTag { operator: "op".into(), subtask: 0 };
        let ack = FromWorker::Event {
            attempt: 3,
            event: Event::Ack { checkpoint_id: 7, tag, file: file.clone(), sync: std::time::Duration::from_millis(2), finished: false },
        };
        let back: FromWorker = Json::decode(&Json::encode(&ack).unwrap()).unwrap();
        let FromWorker::Event { attempt: 3, event: Event::Ack { checkpoint_id: 7, file: decoded, .. } } = back else { panic!("{back:?}") };
        assert_eq!(decoded, file);
        assert!(Bincode::decode::<FromWorker>(&Bincode::encode(&ack).unwrap()).is_err(), "bincode would lose the message");
    }
}
