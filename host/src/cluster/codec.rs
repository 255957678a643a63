//! tonic [`Codec`]s for the cluster's messages: gRPC carries them as opaque messages, so the
//! protocol is the Rust types in [`super::protocol`], with no `.proto` file or code generator
//! to keep in step.
//!
//! Two encodings:
//! * **Control messages in JSON** ([`Json`]): they carry checkpoint metadata types whose
//!   optional fields are left out when empty — which a self-describing format reads back and
//!   bincode cannot — and they are few and small.
//! * **Data frames columnar** ([`Columnar`]): a batch of records goes as its four columns, each
//!   copied whole (little-endian), and is checked like a guest's output on arrival
//!   ([`Batch::from_columns`]). Serde would visit every byte and length one by one: the
//!   `workers` benchmark measured that at ~30 % of a worker's CPU on a network-bound job.
//!   Other messages (barriers, watermarks) are rare and small and go in bincode.

use std::marker::PhantomData;

use bytes::{Buf, BufMut};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tonic::Status;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use wasmflow_types::{Batch, Columns};

use super::protocol::DataFrame;
use crate::runtime::message::Message;

/// How values of `T` become bytes and back. Encoding writes straight into the outgoing buffer
/// (gRPC's, on the wire): a batch is not copied once more on its way out.
pub trait Wire<T>: Send + 'static {
    fn encode<B: BufMut>(value: &T, out: &mut B) -> Result<(), String>;
    fn decode(bytes: &[u8]) -> Result<T, String>;
}

/// JSON.
pub struct Json;

impl<T: Serialize + DeserializeOwned> Wire<T> for Json {
    fn encode<B: BufMut>(value: &T, out: &mut B) -> Result<(), String> {
        serde_json::to_writer(out.writer(), value).map_err(|e| e.to_string())
    }

    fn decode(bytes: &[u8]) -> Result<T, String> {
        serde_json::from_slice(bytes).map_err(|e| e.to_string())
    }
}

/// Data frames: record batches by column, everything else in bincode.
pub struct Columnar;

/// The first byte of a data frame.
const RECORDS: u8 = 0;
const OTHER: u8 = 1;

impl Wire<DataFrame> for Columnar {
    fn encode<B: BufMut>(frame: &DataFrame, out: &mut B) -> Result<(), String> {
        match frame {
            DataFrame::Message(Message::Records(batch)) => {
                out.put_u8(RECORDS);
                write_batch(batch, out);
            }
            other => {
                out.put_u8(OTHER);
                out.put_slice(&wasmflow_types::codec::encode(other).map_err(|e| e.to_string())?);
            }
        }
        Ok(())
    }

    fn decode(bytes: &[u8]) -> Result<DataFrame, String> {
        match bytes.split_first() {
            Some((&RECORDS, rest)) => Ok(DataFrame::Message(Message::Records(read_batch(rest)?))),
            Some((&OTHER, rest)) => wasmflow_types::codec::decode(rest).map_err(|e| e.to_string()),
            _ => Err("not a data frame".into()),
        }
    }
}

/// The reply to a data stream: nothing.
impl Wire<()> for Columnar {
    fn encode<B: BufMut>(_: &(), _: &mut B) -> Result<(), String> {
        Ok(())
    }

    fn decode(_: &[u8]) -> Result<(), String> {
        Ok(())
    }
}

/// Records count and data length (u32 each), then timestamps, key lengths, value lengths and
/// data, all little-endian.
fn write_batch<B: BufMut>(batch: &Batch, out: &mut B) {
    let (data, key_lens, value_lens, timestamps) = batch.column_slices();
    out.put_u32_le(timestamps.len() as u32);
    out.put_u32_le(data.len() as u32);
    timestamps.iter().for_each(|&t| out.put_i64_le(t));
    key_lens.iter().for_each(|&k| out.put_i32_le(k));
    value_lens.iter().for_each(|&v| out.put_u32_le(v));
    out.put_slice(data);
}

fn read_batch(bytes: &[u8]) -> Result<Batch, String> {
    let short = || "a record batch frame is cut short".to_string();
    let word = |at: usize| bytes.get(at..at + 4).map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")) as usize).ok_or_else(short);
    let (n, data_len) = (word(0)?, word(4)?);
    let expected = n.checked_mul(16).and_then(|c| c.checked_add(8 + data_len)).ok_or_else(short)?;
    if bytes.len() != expected {
        return Err(format!("a record batch frame of {} bytes, not the {expected} its header says", bytes.len()));
    }
    let (timestamps, rest) = bytes[8..].split_at(n * 8);
    let (key_lens, rest) = rest.split_at(n * 4);
    let (value_lens, data) = rest.split_at(n * 4);
    let columns = Columns {
        data: data.to_vec(),
        key_lens: key_lens.chunks_exact(4).map(|c| i32::from_le_bytes(c.try_into().expect("4 bytes"))).collect(),
        value_lens: value_lens.chunks_exact(4).map(|c| u32::from_le_bytes(c.try_into().expect("4 bytes"))).collect(),
        timestamps: timestamps.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().expect("8 bytes"))).collect(),
    };
    Batch::from_columns(columns).map_err(|e| format!("a record batch that does not add up: {e}"))
}

/// A codec that encodes `E` and decodes `D` with `W`.
pub struct Framed<W, E, D>(PhantomData<fn(W, E) -> D>);

impl<W, E, D> Default for Framed<W, E, D> {
    fn default() -> Self {
        Framed(PhantomData)
    }
}

impl<W: Wire<E> + Wire<D>, E: Send + 'static, D: Send + 'static> Codec for Framed<W, E, D> {
    type Encode = E;
    type Decode = D;
    type Encoder = FramedEncoder<W, E>;
    type Decoder = FramedDecoder<W, D>;

    fn encoder(&mut self) -> Self::Encoder {
        FramedEncoder(PhantomData)
    }

    fn decoder(&mut self) -> Self::Decoder {
        FramedDecoder(PhantomData)
    }
}

pub struct FramedEncoder<W, E>(PhantomData<fn(W, E)>);

impl<W: Wire<E>, E> Encoder for FramedEncoder<W, E> {
    type Item = E;
    type Error = Status;

    fn encode(&mut self, item: E, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        W::encode(&item, dst).map_err(|e| Status::internal(format!("cannot encode a cluster message: {e}")))
    }
}

pub struct FramedDecoder<W, D>(PhantomData<fn(W) -> D>);

impl<W: Wire<D>, D> Decoder for FramedDecoder<W, D> {
    type Item = D;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<D>, Status> {
        let bytes = src.copy_to_bytes(src.remaining());
        let item = W::decode(&bytes).map_err(|e| Status::invalid_argument(format!("cannot decode a cluster message: {e}")))?;
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
        let mut bytes = Vec::new();
        Json::encode(&ack, &mut bytes).unwrap();
        let back: FromWorker = Json::decode(&bytes).unwrap();
        let FromWorker::Event { attempt: 3, event: Event::Ack { checkpoint_id: 7, file: decoded, .. } } = back else { panic!("{back:?}") };
        assert_eq!(decoded, file);
        let bincode = wasmflow_types::codec::encode(&ack).unwrap();
        assert!(wasmflow_types::codec::decode::<FromWorker>(&bincode).is_err(), "bincode would lose the message");
    }

    fn round_trip(frame: &DataFrame) -> Result<DataFrame, String> {
        let mut bytes = Vec::new();
        Columnar::encode(frame, &mut bytes)?;
        <Columnar as Wire<DataFrame>>::decode(&bytes)
    }

    #[test]
    fn data_frames_round_trip() {
        let mut batch = Batch::new();
        batch.push(Some(b"k1"), b"first", 7);
        batch.push(None, b"", -3);
        batch.push(Some(b""), "ünïcode".as_bytes(), i64::MAX);
        let DataFrame::Message(Message::Records(back)) = round_trip(&DataFrame::Message(Message::Records(batch.clone()))).unwrap() else { panic!() };
        assert_eq!(back, batch);
        let DataFrame::Message(Message::Records(empty)) = round_trip(&DataFrame::Message(Message::Records(Batch::new()))).unwrap() else { panic!() };
        assert!(empty.is_empty());
        let open = DataFrame::Open { attempt: 4, channel: crate::cluster::ChannelId { edge: 2, from: 1, to: 0 } };
        assert!(matches!(round_trip(&open).unwrap(), DataFrame::Open { attempt: 4, channel } if channel.edge == 2 && channel.from == 1));
        assert!(matches!(round_trip(&DataFrame::Message(Message::Watermark(-5))).unwrap(), DataFrame::Message(Message::Watermark(-5))));
    }

    /// A frame from a faulty peer is refused with a reason, never trusted: cut short, longer
    /// than its header says, or with lengths that do not add up to its data.
    #[test]
    fn damaged_data_frames_are_refused() {
        let mut batch = Batch::new();
        batch.push(Some(b"key"), b"value", 1);
        let mut bytes = Vec::new();
        Columnar::encode(&DataFrame::Message(Message::Records(batch)), &mut bytes).unwrap();
        let cut = <Columnar as Wire<DataFrame>>::decode(&bytes[..bytes.len() - 1]).unwrap_err();
        assert!(cut.contains("not the"), "{cut}");
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(<Columnar as Wire<DataFrame>>::decode(&longer).is_err());
        let mut wrong = bytes.clone();
        wrong[1 + 8 + 8 + 4] = 200; // the value length, past the data
        let e = <Columnar as Wire<DataFrame>>::decode(&wrong).unwrap_err();
        assert!(e.contains("does not add up"), "{e}");
        assert!(<Columnar as Wire<DataFrame>>::decode(&[]).is_err());
        assert!(<Columnar as Wire<DataFrame>>::decode(&[9, 1, 2]).is_err());
        let huge = [0u8, 255, 255, 255, 255, 255, 255, 255, 255];
        assert!(<Columnar as Wire<DataFrame>>::decode(&huge).is_err(), "a header claiming more than the frame is refused before allocating");
    }
}
