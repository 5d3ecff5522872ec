//! CSTP framing (docs/protocol.md, "CSTP framing"):
//! `53 54 46 01 | len u16 BE | type | 00`.

/// Bytes before the payload.
pub const HEADER_LEN: usize = 8;
/// 'S' 'T' 'F' 1.
pub const MAGIC: [u8; 4] = [0x53, 0x54, 0x46, 0x01];
/// A frame must fit one TLS record (2^14 bytes of plaintext).
pub const MAX_PAYLOAD: usize = 16384 - HEADER_LEN;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameType {
    Data,
    DpdReq,
    DpdResp,
    Disconnect,
    Keepalive,
    Compressed,
    Terminate,
    /// A type this server does not know; ignored, not fatal.
    Other(u8),
}

impl FrameType {
    pub fn from_byte(b: u8) -> Self {
        match b {
            0x00 => Self::Data,
            0x03 => Self::DpdReq,
            0x04 => Self::DpdResp,
            0x05 => Self::Disconnect,
            0x07 => Self::Keepalive,
            0x08 => Self::Compressed,
            0x09 => Self::Terminate,
            other => Self::Other(other),
        }
    }

    pub fn to_byte(self) -> u8 {
        match self {
            Self::Data => 0x00,
            Self::DpdReq => 0x03,
            Self::DpdResp => 0x04,
            Self::Disconnect => 0x05,
            Self::Keepalive => 0x07,
            Self::Compressed => 0x08,
            Self::Terminate => 0x09,
            Self::Other(b) => b,
        }
    }
}

/// Payload byte of a client DISCONNECT that means "user logged out".
pub const DISCONNECT_USER_LOGOUT: u8 = 0xb0;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frame<'a> {
    pub ty: FrameType,
    pub payload: &'a [u8],
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("bad CSTP magic {0:02x?}")]
    BadMagic([u8; 4]),
    #[error("CSTP payload of {len} bytes exceeds {max}")]
    TooLong { len: usize, max: usize },
    #[error("output buffer too small: {need} bytes needed")]
    BufferTooSmall { need: usize },
}

/// Decodes one frame from the front of `buf`.
///
/// `Ok(None)` means more bytes are needed; `Ok(Some((frame, used)))` borrows
/// the payload from `buf` and says how many bytes it consumed.
pub fn decode(buf: &[u8]) -> Result<Option<(Frame<'_>, usize)>, FrameError> {
    let Some(head) = buf.get(..HEADER_LEN) else {
        return Ok(None);
    };
    let magic = [head[0], head[1], head[2], head[3]];
    if magic != MAGIC {
        return Err(FrameError::BadMagic(magic));
    }
    let len = usize::from(u16::from_be_bytes([head[4], head[5]]));
    if len > MAX_PAYLOAD {
        return Err(FrameError::TooLong {
            len,
            max: MAX_PAYLOAD,
        });
    }
    let Some(payload) = buf.get(HEADER_LEN..HEADER_LEN + len) else {
        return Ok(None);
    };
    Ok(Some((
        Frame {
            ty: FrameType::from_byte(head[6]),
            payload,
        },
        HEADER_LEN + len,
    )))
}

/// Writes the 8-byte header for a payload of `len` bytes.
pub fn encode_header(
    ty: FrameType,
    len: usize,
    out: &mut [u8; HEADER_LEN],
) -> Result<(), FrameError> {
    if len > MAX_PAYLOAD {
        return Err(FrameError::TooLong {
            len,
            max: MAX_PAYLOAD,
        });
    }
    let l = (len as u16).to_be_bytes();
    *out = [
        MAGIC[0],
        MAGIC[1],
        MAGIC[2],
        MAGIC[3],
        l[0],
        l[1],
        ty.to_byte(),
        0,
    ];
    Ok(())
}

/// Writes a whole frame into `out`; returns the bytes used.
pub fn encode(ty: FrameType, payload: &[u8], out: &mut [u8]) -> Result<usize, FrameError> {
    let need = HEADER_LEN + payload.len();
    if out.len() < need {
        return Err(FrameError::BufferTooSmall { need });
    }
    let mut head = [0u8; HEADER_LEN];
    encode_header(ty, payload.len(), &mut head)?;
    out[..HEADER_LEN].copy_from_slice(&head);
    out[HEADER_LEN..need].copy_from_slice(payload);
    Ok(need)
}

/// What a frame (CSTP) or record (DTLS) from a client asks of the server:
/// the same on both channels (docs/protocol.md, "CSTP framing" and "DTLS:
/// record payloads and DPD").
#[derive(Debug, PartialEq, Eq)]
pub enum ClientFrame<'a> {
    /// An IP packet for the TUN device.
    Packet(&'a [u8]),
    /// Answer with a DPD response of the same payload: the client's MTU
    /// probe needs its size back.
    DpdRequest(&'a [u8]),
    /// The client ends the session.
    Disconnect(DisconnectReason<'a>),
    /// Liveness only (a DPD response, a keepalive).
    Alive,
    /// Not for a server (compression is never negotiated; TERMINATE and
    /// unknown types): dropped and counted.
    Unexpected,
}

/// A DISCONNECT's payload: a code byte, then the client's reason text.
#[derive(Debug, PartialEq, Eq)]
pub struct DisconnectReason<'a>(pub &'a [u8]);

impl DisconnectReason<'_> {
    /// The reason text, for the log (lossy, trailing NULs dropped).
    pub fn text(&self) -> String {
        let text = String::from_utf8_lossy(self.0.get(1..).unwrap_or_default());
        text.trim_end_matches('\0').to_owned()
    }
}

/// Classifies one frame or record from a client.
pub fn client_frame(ty: FrameType, payload: &[u8]) -> ClientFrame<'_> {
    match ty {
        FrameType::Data => ClientFrame::Packet(payload),
        FrameType::DpdReq => ClientFrame::DpdRequest(payload),
        FrameType::Disconnect => ClientFrame::Disconnect(DisconnectReason(payload)),
        FrameType::DpdResp | FrameType::Keepalive => ClientFrame::Alive,
        FrameType::Compressed | FrameType::Terminate | FrameType::Other(_) => {
            ClientFrame::Unexpected
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_frames_by_type() {
        let pkt = [0x45, 0, 0, 20];
        assert_eq!(
            client_frame(FrameType::Data, &pkt),
            ClientFrame::Packet(&pkt)
        );
        assert_eq!(
            client_frame(FrameType::DpdReq, b"probe"),
            ClientFrame::DpdRequest(b"probe")
        );
        assert_eq!(client_frame(FrameType::DpdResp, b""), ClientFrame::Alive);
        assert_eq!(client_frame(FrameType::Keepalive, b""), ClientFrame::Alive);
        for ty in [
            FrameType::Compressed,
            FrameType::Terminate,
            FrameType::Other(0x42),
        ] {
            assert_eq!(client_frame(ty, b"x"), ClientFrame::Unexpected, "{ty:?}");
        }
        let ClientFrame::Disconnect(why) =
            client_frame(FrameType::Disconnect, b"\xb0User logout\0\0")
        else {
            panic!("not a disconnect");
        };
        assert_eq!(why.text(), "User logout");
        assert_eq!(DisconnectReason(b"").text(), "");
    }

    #[test]
    fn decodes_captured_data_frame_header() {
        // C→S 53 54 46 01 00 54 00 00 + 84-byte packet (docs/protocol.md, "CSTP framing").
        let mut wire = vec![0x53, 0x54, 0x46, 0x01, 0x00, 0x54, 0x00, 0x00];
        wire.extend(std::iter::repeat_n(0x45, 84));
        let (f, used) = decode(&wire).unwrap().unwrap();
        assert_eq!(used, 92);
        assert_eq!(f.ty, FrameType::Data);
        assert_eq!(f.payload.len(), 84);
    }

    #[test]
    fn partial_input_needs_more() {
        let mut out = [0u8; 64];
        let n = encode(FrameType::DpdReq, b"abc", &mut out).unwrap();
        for cut in 0..n {
            assert_eq!(decode(&out[..cut]).unwrap(), None, "cut at {cut}");
        }
        assert!(decode(&out[..n]).unwrap().is_some());
    }

    #[test]
    fn round_trips_every_type() {
        for ty in [
            FrameType::Data,
            FrameType::DpdReq,
            FrameType::DpdResp,
            FrameType::Disconnect,
            FrameType::Keepalive,
            FrameType::Compressed,
            FrameType::Terminate,
            FrameType::Other(0x42),
        ] {
            let mut out = [0u8; 32];
            let n = encode(ty, b"xy", &mut out).unwrap();
            let (f, used) = decode(&out[..n]).unwrap().unwrap();
            assert_eq!((f.ty, f.payload, used), (ty, &b"xy"[..], n));
        }
    }

    #[test]
    fn two_frames_back_to_back() {
        let mut buf = [0u8; 64];
        let a = encode(FrameType::Keepalive, b"", &mut buf).unwrap();
        let b = encode(FrameType::Data, b"\x45\x00", &mut buf[a..]).unwrap();
        let (f1, u1) = decode(&buf[..a + b]).unwrap().unwrap();
        assert_eq!(f1.ty, FrameType::Keepalive);
        let (f2, u2) = decode(&buf[u1..a + b]).unwrap().unwrap();
        assert_eq!((f2.ty, u1 + u2), (FrameType::Data, a + b));
    }

    #[test]
    fn rejects_bad_magic_and_oversize() {
        assert!(matches!(
            decode(b"GET / HTTP/1.1\r\n"),
            Err(FrameError::BadMagic(_))
        ));
        let wire = [0x53, 0x54, 0x46, 0x01, 0xff, 0xff, 0, 0];
        assert!(matches!(
            decode(&wire),
            Err(FrameError::TooLong { len: 65535, .. })
        ));
        let mut small = [0u8; 9];
        assert_eq!(
            encode(FrameType::Data, b"ab", &mut small),
            Err(FrameError::BufferTooSmall { need: 10 })
        );
    }
}
