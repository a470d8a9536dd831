//! Outbound byte queues, one per direction, written without ever blocking the other direction.
//!
//! A proxy that awaits `write_all` to one peer while not reading the other can deadlock: when a
//! client pipelines a large batch, PostgreSQL stops reading while its own output is unread, and
//! libpq avoids that deadlock only by reading while it writes. So the session never awaits a
//! full write: each turn of the relay polls both queues' writes along with both sockets' reads,
//! and a single write call takes what the socket accepts now. Chunks are the original `Bytes`
//! split from the read buffers, so relayed messages are never copied or re-encoded.

use std::collections::VecDeque;
use std::future::{Future, poll_fn};
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes};
use tokio::io::AsyncWrite;

/// At most this many chunks go into one vectored write.
const MAX_IOVECS: usize = 32;

#[derive(Debug, Default)]
pub struct OutQueue {
    chunks: VecDeque<Bytes>,
    /// Total bytes queued, for backpressure: the session stops reading the other peer while a
    /// queue is above its high-water mark, which bounds memory per session.
    bytes: usize,
    /// Bytes were written since the last successful flush. A TCP stream needs no flush, but a
    /// TLS stream keeps records buffered until flushed.
    needs_flush: bool,
}

impl OutQueue {
    pub fn push(&mut self, chunk: Bytes) {
        if !chunk.is_empty() {
            self.bytes += chunk.len();
            self.chunks.push_back(chunk);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Something to write, or a flush to finish.
    pub fn has_work(&self) -> bool {
        !self.chunks.is_empty() || self.needs_flush
    }

    /// One step of progress: write what the socket takes, or finish a pending flush.
    pub fn poll_progress<W: AsyncWrite + Unpin + ?Sized>(
        &mut self,
        cx: &mut Context<'_>,
        w: &mut W,
    ) -> Poll<io::Result<()>> {
        if self.chunks.is_empty() {
            ready!(Pin::new(&mut *w).poll_flush(cx))?;
            self.needs_flush = false;
            Poll::Ready(Ok(()))
        } else {
            self.poll_write_some(cx, w)
        }
    }

    /// Writes as much as the socket accepts in one call (cancel-safe: the queue only advances
    /// by what was actually written, in the same poll).
    pub async fn write_some<W: AsyncWrite + Unpin + ?Sized>(
        &mut self,
        w: &mut W,
    ) -> io::Result<()> {
        poll_fn(|cx| self.poll_write_some(cx, w)).await
    }

    /// `write_some`, one poll of it.
    fn poll_write_some<W: AsyncWrite + Unpin + ?Sized>(
        &mut self,
        cx: &mut Context<'_>,
        w: &mut W,
    ) -> Poll<io::Result<()>> {
        let written = if self.chunks.len() == 1
            && let Some(one) = self.chunks.front()
        {
            // The common case (one message, or one read's worth, per direction per turn):
            // no vector to build.
            ready!(Pin::new(&mut *w).poll_write(cx, one))?
        } else {
            let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
            let n = self.slices(&mut slices);
            ready!(Pin::new(&mut *w).poll_write_vectored(cx, &slices[..n]))?
        };
        self.wrote(written)?;
        self.needs_flush = true;
        if self.chunks.is_empty() && Pin::new(&mut *w).poll_flush(cx)?.is_ready() {
            self.needs_flush = false;
        }
        Poll::Ready(Ok(()))
    }

    /// Writes what the socket takes right now, without waiting. Called as soon as bytes are
    /// queued: it saves a turn of the event loop, and it releases the queued slices of the read
    /// buffer at once, so the buffer is uniquely owned again and its next `reserve` reuses the
    /// allocation instead of allocating afresh for every message.
    pub fn write_now<W: AsyncWrite + Unpin + ?Sized>(&mut self, w: &mut W) -> io::Result<()> {
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        let fut = std::pin::pin!(self.write_some(w));
        match fut.poll(&mut cx) {
            Poll::Ready(r) => r,
            Poll::Pending => Ok(()),
        }
    }

    /// Writes as much as a non-blocking socket takes in one system call, for the steady-state
    /// relay (`crate::fastpath`), which owns its sockets outside the async runtime. A plain
    /// TCP socket buffers nothing, so there is nothing to flush. `WouldBlock` when the socket
    /// takes nothing now.
    pub fn write_to(&mut self, mut w: impl io::Write) -> io::Result<()> {
        // What an earlier async write left to flush is nothing on a plain TCP socket.
        self.needs_flush = false;
        if self.chunks.is_empty() {
            return Ok(());
        }
        let written = if self.chunks.len() == 1
            && let Some(one) = self.chunks.front()
        {
            w.write(one)?
        } else {
            let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
            let n = self.slices(&mut slices);
            w.write_vectored(&slices[..n])?
        };
        self.wrote(written)
    }

    /// The first chunks as slices for one vectored write; how many.
    fn slices<'a>(&'a self, slices: &mut [IoSlice<'a>; MAX_IOVECS]) -> usize {
        self.chunks
            .iter()
            .take(MAX_IOVECS)
            .zip(slices.iter_mut())
            .fold(0, |n, (c, s)| {
                *s = IoSlice::new(c);
                n + 1
            })
    }

    /// Takes `written` bytes off the front; a write that took nothing from a non-empty queue
    /// is an error (the peer cannot take more, ever).
    fn wrote(&mut self, written: usize) -> io::Result<()> {
        if written == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        self.advance(written);
        Ok(())
    }

    /// Completes a flush that `write_some` could not finish at once.
    pub async fn flush<W: AsyncWrite + Unpin + ?Sized>(&mut self, w: &mut W) -> io::Result<()> {
        poll_fn(|cx| Pin::new(&mut *w).poll_flush(cx)).await?;
        self.needs_flush = false;
        Ok(())
    }

    /// Writes everything queued, then flushes. Used only when the session is ending, when there
    /// is nothing left to read.
    pub async fn drain_to<W: AsyncWrite + Unpin + ?Sized>(&mut self, w: &mut W) -> io::Result<()> {
        while !self.is_empty() {
            self.write_some(w).await?;
        }
        self.flush(w).await
    }

    /// Gives back the chunk list a burst grew, once it is empty.
    pub fn shrink(&mut self) {
        if self.chunks.is_empty() && self.chunks.capacity() > 64 {
            self.chunks.shrink_to(16);
        }
    }

    fn advance(&mut self, mut n: usize) {
        self.bytes -= n;
        while n > 0 {
            let Some(front) = self.chunks.front_mut() else {
                break;
            };
            if front.len() <= n {
                n -= front.len();
                self.chunks.pop_front();
            } else {
                front.advance(n);
                n = 0;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn writes_everything_in_order_through_partial_writes() {
        // A duplex pipe with a tiny buffer forces many partial writes.
        let (mut a, mut b) = tokio::io::duplex(7);
        let mut q = OutQueue::default();
        let mut expected = Vec::new();
        for i in 0..50u8 {
            let chunk: Vec<u8> = (0..i).map(|j| i.wrapping_mul(j)).collect();
            expected.extend_from_slice(&chunk);
            q.push(Bytes::from(chunk));
        }
        assert_eq!(q.bytes(), expected.len());
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            tokio::io::AsyncReadExt::read_to_end(&mut b, &mut got)
                .await
                .expect("read");
            got
        });
        q.drain_to(&mut a).await.expect("drain");
        assert_eq!(q.bytes(), 0);
        drop(a);
        assert_eq!(reader.await.expect("join"), expected);
    }

    /// A non-blocking socket that takes at most 3 bytes per call and every other call
    /// nothing (`WouldBlock`).
    struct Trickle {
        got: Vec<u8>,
        calls: usize,
    }

    impl io::Write for Trickle {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.calls += 1;
            if self.calls.is_multiple_of(2) {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let n = buf.len().min(3);
            self.got.extend_from_slice(&buf[..n]);
            Ok(n)
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_queue_an_async_write_left_half_written_is_finished_by_synchronous_writes() {
        // An async write that took only part of the queue leaves a flush owed, as a session
        // leaving its event loop for the steady relay can.
        let (mut a, mut b) = tokio::io::duplex(5);
        let mut q = OutQueue::default();
        let mut expected = Vec::new();
        for i in 1..20u8 {
            let chunk = vec![i; usize::from(i)];
            expected.extend_from_slice(&chunk);
            q.push(Bytes::from(chunk));
        }
        q.write_now(&mut a).expect("partial async write");
        assert!(q.has_work() && q.needs_flush);
        let mut already = vec![0u8; 5];
        tokio::io::AsyncReadExt::read_exact(&mut b, &mut already)
            .await
            .expect("what the async write took");
        let mut sock = Trickle {
            got: already,
            calls: 0,
        };
        let mut rounds = 0;
        while q.has_work() {
            rounds += 1;
            assert!(rounds < 1_000, "the queue never finished");
            match q.write_to(&mut sock) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => panic!("write_to: {e}"),
            }
        }
        assert_eq!(sock.got, expected);
        assert_eq!(q.bytes(), 0);
        // Nothing left: a further write does nothing and fails nothing.
        q.write_to(&mut sock).expect("empty queue");
    }
}
