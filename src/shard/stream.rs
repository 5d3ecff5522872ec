//! One TCP stream shared by a tunnel's reader and writer tasks.
//!
//! glommio polls readiness and only then copies into the caller's buffer,
//! so a pending read needs no buffer of its own: the reader borrows the
//! shard's one receive buffer for the duration of a single poll. Idle
//! tunnels hold neither a 16 KiB buffer nor a second (dup'ed) descriptor.

use std::cell::RefCell;
use std::future::poll_fn;
use std::io;
use std::os::fd::AsRawFd;
use std::pin::Pin;

use futures_lite::{AsyncRead, AsyncWrite};
use glommio::net::TcpStream;

pub(crate) struct SharedStream(RefCell<TcpStream>);

impl SharedStream {
    pub(crate) fn new(stream: TcpStream) -> Self {
        Self(RefCell::new(stream))
    }

    /// Waits for data and reads it into `buf` (borrowed only while polled).
    pub(crate) async fn read_into(&self, buf: &RefCell<Vec<u8>>) -> io::Result<usize> {
        poll_fn(|cx| {
            let mut stream = self.0.borrow_mut();
            let mut buf = buf.borrow_mut();
            Pin::new(&mut *stream).poll_read(cx, &mut buf[..])
        })
        .await
    }

    pub(crate) async fn write_all(&self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            let n = poll_fn(|cx| Pin::new(&mut *self.0.borrow_mut()).poll_write(cx, data)).await?;
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            data = &data[n..];
        }
        Ok(())
    }

    /// Ends both directions; a pending read then sees EOF.
    pub(crate) fn shutdown(&self) {
        crate::sys::net::shutdown(self.0.borrow().as_raw_fd());
    }
}
