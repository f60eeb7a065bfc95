//! `grpc_frame`: the unary frame decoder against a second reading of the format.

use bytes::Bytes;
use exhook_proto::codec::{DEFAULT_MAX_MESSAGE_BYTES, FrameError, decode_unary_frame};

/// The limit byte 0 selects: small limits (so that oversized frames are easy to reach), the
/// default, and none at all.
pub(crate) fn limit(byte: u8) -> usize {
    match byte % 4 {
        0 => usize::from(byte / 4),
        1 => 1024,
        2 => DEFAULT_MAX_MESSAGE_BYTES,
        _ => usize::MAX,
    }
}

/// What `decode_unary_frame` must answer, read from the format (`flag:u8 len:u32be msg`).
fn expected(body: &[u8], max: usize) -> Result<&[u8], FrameError> {
    let Some((header, rest)) = body.split_first_chunk::<5>() else { return Err(FrameError::Empty) };
    match header[0] {
        0 => {}
        1 => return Err(FrameError::Compressed),
        f => return Err(FrameError::InvalidFlag(f)),
    }
    let announced = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
    if announced > max {
        return Err(FrameError::TooLarge { announced, max });
    }
    match rest.len().cmp(&announced) {
        std::cmp::Ordering::Less => Err(FrameError::Truncated { announced, present: rest.len() }),
        std::cmp::Ordering::Greater => Err(FrameError::Trailing(rest.len() - announced)),
        std::cmp::Ordering::Equal => Ok(rest),
    }
}

pub(crate) fn run(data: &[u8]) {
    let Some((&sel, body)) = data.split_first() else { return };
    let max = limit(sel);
    let body = Bytes::copy_from_slice(body);
    let got = decode_unary_frame(&body, max);
    match (&got, expected(&body, max)) {
        (Ok(msg), Ok(want)) => assert_eq!(msg.as_ref(), want, "the Ok slice is not the message"),
        (Err(e), Err(want)) => {
            assert_eq!(*e, want, "wrong error");
            // It becomes a gRPC status message: it must say something.
            assert!(!e.to_string().is_empty());
        }
        (got, want) => panic!("decode_unary_frame({body:?}, {max}) = {got:?}, expected {want:?}"),
    }
}
