//! A bounds-checked read cursor and a few write helpers for the DTLS wire
//! formats. Every read checks the length first, so no input can panic.

/// Why a message failed to decode; names the field that was cut short.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Short(pub(crate) &'static str);

/// A cursor over borrowed bytes (RFC 5246 §4 presentation language).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Self { buf }
    }

    pub(crate) fn rest(&self) -> &'a [u8] {
        self.buf
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    pub(crate) fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], Short> {
        if self.buf.len() < n {
            return Err(Short(what));
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    pub(crate) fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], Short> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, what)?);
        Ok(out)
    }

    pub(crate) fn u8(&mut self, what: &'static str) -> Result<u8, Short> {
        Ok(self.array::<1>(what)?[0])
    }

    pub(crate) fn u16(&mut self, what: &'static str) -> Result<u16, Short> {
        Ok(u16::from_be_bytes(self.array(what)?))
    }

    pub(crate) fn u24(&mut self, what: &'static str) -> Result<u32, Short> {
        let b: [u8; 3] = self.array(what)?;
        Ok(u32::from_be_bytes([0, b[0], b[1], b[2]]))
    }

    pub(crate) fn u48(&mut self, what: &'static str) -> Result<u64, Short> {
        let b: [u8; 6] = self.array(what)?;
        Ok(u64::from_be_bytes([
            0, 0, b[0], b[1], b[2], b[3], b[4], b[5],
        ]))
    }

    /// A vector with a one-byte length prefix: `opaque x<0..2^8-1>`.
    pub(crate) fn vec8(&mut self, what: &'static str) -> Result<&'a [u8], Short> {
        let n = self.u8(what)?;
        self.take(usize::from(n), what)
    }

    /// A vector with a two-byte length prefix: `opaque x<0..2^16-1>`.
    pub(crate) fn vec16(&mut self, what: &'static str) -> Result<&'a [u8], Short> {
        let n = self.u16(what)?;
        self.take(usize::from(n), what)
    }

    /// Fails unless every byte was consumed (trailing garbage is a decode error).
    pub(crate) fn expect_empty(&self, what: &'static str) -> Result<(), Short> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(Short(what))
        }
    }
}

pub(crate) fn put_u16(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_be_bytes());
}

pub(crate) fn put_u24(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_be_bytes()[1..]);
}

/// Writes `v` (which must be < 2^48) as six big-endian bytes.
pub(crate) fn u48_bytes(v: u64) -> [u8; 6] {
    let b = v.to_be_bytes();
    [b[2], b[3], b[4], b[5], b[6], b[7]]
}

/// Appends `opaque x<0..2^8-1>`; callers only pass short, bounded fields.
pub(crate) fn put_vec8(out: &mut Vec<u8>, v: &[u8]) {
    debug_assert!(v.len() <= usize::from(u8::MAX));
    out.push(v.len() as u8);
    out.extend_from_slice(v);
}

pub(crate) fn put_vec16(out: &mut Vec<u8>, v: &[u8]) {
    debug_assert!(v.len() <= usize::from(u16::MAX));
    put_u16(out, v.len() as u16);
    out.extend_from_slice(v);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_are_checked() {
        let mut r = Reader::new(&[1, 2, 3, 4, 5, 6, 7]);
        assert_eq!(r.u24("a"), Ok(0x010203));
        assert_eq!(r.u48("b"), Err(Short("b")));
        assert_eq!(r.u16("c"), Ok(0x0405));
        assert_eq!(r.vec8("d"), Err(Short("d"))); // length 6, only 1 byte left
        let mut r = Reader::new(&[2, 9, 9]);
        assert_eq!(r.vec8("e"), Ok(&[9, 9][..]));
        assert!(r.expect_empty("f").is_ok());
        assert_eq!(u48_bytes(0x0102_0304_0506), [1, 2, 3, 4, 5, 6]);
    }
}
