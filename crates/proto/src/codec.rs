//! A gRPC codec that sends an already-encoded message and decodes the reply with prost.
//!
//! The gateway encodes a request once per target package and hands the same bytes to every
//! provider of that package (notification fan-out, queued delivery), so the encode side takes
//! [`Bytes`] instead of a message value.

use std::marker::PhantomData;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes};
use tonic::Status;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};

/// Encodes pre-encoded [`Bytes`]; decodes `D` with prost.
#[derive(Debug)]
pub struct RawCodec<D>(PhantomData<fn() -> D>);

impl<D> Default for RawCodec<D> {
    fn default() -> Self {
        RawCodec(PhantomData)
    }
}

impl<D: prost::Message + Default + Send + 'static> Codec for RawCodec<D> {
    type Encode = Bytes;
    type Decode = D;
    type Encoder = RawEncoder;
    type Decoder = ProstDecoder<D>;

    fn encoder(&mut self) -> Self::Encoder {
        RawEncoder
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProstDecoder(PhantomData)
    }
}

/// Copies pre-encoded bytes into the frame.
#[derive(Debug, Clone, Copy, Default)]
pub struct RawEncoder;

impl Encoder for RawEncoder {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put(item);
        Ok(())
    }
}

/// Decodes one prost message from the frame.
#[derive(Debug)]
pub struct ProstDecoder<D>(PhantomData<fn() -> D>);

impl<D: prost::Message + Default> Decoder for ProstDecoder<D> {
    type Item = D;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<D>, Status> {
        let len = src.remaining();
        D::decode(src.copy_to_bytes(len))
            .map(Some)
            .map_err(|e| Status::internal(format!("cannot decode {}: {e}", std::any::type_name::<D>())))
    }
}

/// Parses a `grpc-timeout` value: up to 8 digits and a unit (`H`, `M`, `S`, `m`, `u`, `n`).
pub fn parse_grpc_timeout(value: &str) -> Option<Duration> {
    if value.len() < 2 || value.len() > 9 {
        return None;
    }
    // Checked: a multi-byte last character (not a unit) must be a `None`, not a panic.
    let (digits, unit) = value.split_at_checked(value.len() - 1)?;
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// The largest message (request from EMQX, reply from a provider) accepted by default:
/// 4 MiB, tonic's own default decoding limit.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;

/// Why a gRPC length-prefixed message could not be taken out of a unary body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// Fewer than the 5 bytes of a message prefix.
    #[error("reply without a message")]
    Empty,
    /// The compressed flag is set (the gateway never asks for compression).
    #[error("compressed reply (the gateway asks for identity)")]
    Compressed,
    /// The flag byte is neither 0 nor 1.
    #[error("invalid compressed flag {0}")]
    InvalidFlag(u8),
    /// The prefix announces more bytes than the body holds.
    #[error("truncated reply: {announced} bytes announced, {present} present")]
    Truncated {
        /// Length in the prefix.
        announced: usize,
        /// Bytes after the prefix.
        present: usize,
    },
    /// The prefix announces more than the limit.
    #[error("reply of {announced} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// Length in the prefix.
        announced: usize,
        /// The limit.
        max: usize,
    },
    /// Bytes after the one message of a unary reply.
    #[error("{0} bytes after the message of a unary reply")]
    Trailing(usize),
}

/// Takes the one message out of a unary gRPC body (`flag:u8 len:u32be message`), refusing a
/// compressed, truncated, oversized or trailing-garbage body. Pure: the fuzz target's subject.
pub fn decode_unary_frame(body: &Bytes, max: usize) -> Result<Bytes, FrameError> {
    if body.len() < 5 {
        return Err(FrameError::Empty);
    }
    match body[0] {
        0 => {}
        1 => return Err(FrameError::Compressed),
        f => return Err(FrameError::InvalidFlag(f)),
    }
    let announced = u32::from_be_bytes([body[1], body[2], body[3], body[4]]) as usize;
    if announced > max {
        return Err(FrameError::TooLarge { announced, max });
    }
    let present = body.len() - 5;
    if present < announced {
        return Err(FrameError::Truncated { announced, present });
    }
    if present > announced {
        return Err(FrameError::Trailing(present - announced));
    }
    Ok(body.slice(5..))
}

#[cfg(test)]
mod frame_tests {
    use super::*;

    #[test]
    fn one_message_or_a_named_error() {
        let ok = Bytes::from_static(&[0, 0, 0, 0, 2, 8, 1]);
        assert_eq!(decode_unary_frame(&ok, 10).unwrap(), Bytes::from_static(&[8, 1]));
        assert_eq!(decode_unary_frame(&Bytes::from_static(&[0, 0, 0]), 10), Err(FrameError::Empty));
        assert_eq!(decode_unary_frame(&Bytes::from_static(&[1, 0, 0, 0, 0]), 10), Err(FrameError::Compressed));
        assert_eq!(decode_unary_frame(&Bytes::from_static(&[7, 0, 0, 0, 0]), 10), Err(FrameError::InvalidFlag(7)));
        assert_eq!(
            decode_unary_frame(&Bytes::from_static(&[0, 0, 0, 0, 3, 1]), 10),
            Err(FrameError::Truncated { announced: 3, present: 1 })
        );
        assert_eq!(
            decode_unary_frame(&Bytes::from_static(&[0, 0, 0, 0, 11]), 10),
            Err(FrameError::TooLarge { announced: 11, max: 10 })
        );
        assert_eq!(decode_unary_frame(&Bytes::from_static(&[0, 0, 0, 0, 0, 9]), 10), Err(FrameError::Trailing(1)));
        assert_eq!(decode_unary_frame(&Bytes::from_static(&[0, 0, 0, 0, 0]), 10).unwrap(), Bytes::new());
    }
}
