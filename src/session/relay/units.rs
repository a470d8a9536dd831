//! Protocol units in flight (one per ReadyForQuery owed), each with what it carries from the
//! moment its message is analysed to its ReadyForQuery: its kind and times for the latency
//! metrics, its DDL decisions for the audit log, the prepared-statement tracking slots it frees
//! if it succeeds, and whether the server answered it with an error.

use std::collections::VecDeque;
use std::time::Duration;

use super::prepared::Untrack;
use crate::metrics::UnitKind;
use crate::protocol::ErrorFields;

/// At most this many protocol units are timed at once (a client pipelining more is not timed
/// beyond it; nothing else depends on it).
const MAX_TIMED_UNITS: usize = 100_000;

/// The units in flight, and what the message being forwarded adds to the next one.
#[derive(Debug, Default)]
pub(in crate::session) struct Units {
    /// Units in flight, oldest first; bounded.
    timed: VecDeque<UnitTiming>,
    /// Audit drafts of the message being forwarded, until its unit is timed.
    pub(in crate::session) audit_pending: Vec<crate::audit::Draft>,
    /// Slot removals (Close, DEALLOCATE, …) of the message being forwarded, until its unit is
    /// timed; applied when that unit ends without an error.
    pub(super) untrack_pending: Vec<Untrack>,
    /// The first error of the unit at the front, for the audit log.
    error: Option<String>,
    /// When the client bytes being processed were read: a unit's time starts there, before
    /// its message is analysed (the analysis is part of ddlgate's overhead).
    read_at: Option<Tick>,
}

/// A reading of the monotonic clock, in nanoseconds. A unit's times are read three times per
/// round trip; `std::time::Instant` costs more in its checked, normalised arithmetic than in
/// the reading itself, and these are only ever subtracted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(in crate::session) struct Tick(u64);

impl Tick {
    pub(in crate::session) fn now() -> Tick {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `ts` is a valid, writable timespec, and CLOCK_MONOTONIC exists on every
        // platform ddlgate builds for; clock_gettime writes nothing else.
        let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
        debug_assert_eq!(rc, 0);
        let secs = u64::try_from(ts.tv_sec).unwrap_or(0);
        let nanos = u64::try_from(ts.tv_nsec).unwrap_or(0);
        Tick(secs.wrapping_mul(1_000_000_000).wrapping_add(nanos))
    }

    /// Time from `earlier` to this reading (zero if `earlier` is later).
    pub(in crate::session) fn since(self, earlier: Tick) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }
}

/// One protocol unit on its way, for the latency metrics and the audit log.
#[derive(Debug)]
pub(super) struct UnitTiming {
    /// DDL decisions taken in it, written to the audit log with its outcome.
    pub audit: Vec<crate::audit::Draft>,
    /// Tracking slots it frees if it succeeds.
    pub untrack: Vec<Untrack>,
    pub kind: UnitKind,
    /// When ddlgate received the client's message.
    pub received: Tick,
    /// When its message was written to the upstream socket (`received` until then).
    pub sent: Tick,
    /// `sent` is set.
    forwarded: bool,
    /// An ErrorResponse arrived for it.
    pub error: bool,
}

impl Units {
    /// A protocol unit was forwarded: time it until its ReadyForQuery, with what its message
    /// brought.
    pub(super) fn started(&mut self, kind: UnitKind) {
        if self.timed.len() < MAX_TIMED_UNITS {
            let received = self.read_at.unwrap_or_else(Tick::now);
            self.timed.push_back(UnitTiming {
                audit: std::mem::take(&mut self.audit_pending),
                untrack: std::mem::take(&mut self.untrack_pending),
                kind,
                received,
                sent: received,
                forwarded: false,
                error: false,
            });
        }
    }

    /// Client bytes were just read: the units they complete were received now.
    pub(super) fn bytes_read(&mut self) {
        self.read_at = Some(Tick::now());
    }

    /// Everything queued for the upstream is written: units not yet marked were sent now.
    pub(super) fn forwarded(&mut self) {
        let now = Tick::now();
        for u in self.timed.iter_mut().rev().take_while(|u| !u.forwarded) {
            u.sent = now;
            u.forwarded = true;
        }
    }

    /// The last `n` units are owed nothing after all (Syncs the server ignored during COPY).
    pub(super) fn forget_last(&mut self, n: u32) {
        for _ in 0..n {
            self.timed.pop_back();
        }
    }

    /// An ErrorResponse for the unit at the front (`body`, decoded only when an audit record
    /// needs its code and message).
    pub(super) fn error(&mut self, body: &[u8]) {
        if let Some(u) = self.timed.front_mut() {
            u.error = true;
            if !u.audit.is_empty() && self.error.is_none() {
                let e = ErrorFields::parse(body);
                self.error = Some(format!("{}: {}", e.code, e.message));
            }
        }
    }

    /// The unit at the front got its ReadyForQuery: it, and its first error for the audit log.
    pub(super) fn answered(&mut self) -> Option<(UnitTiming, Option<String>)> {
        let u = self.timed.pop_front()?;
        Some((u, self.error.take()))
    }

    /// Gives back what a burst of messages grew, once it is idle.
    pub(super) fn shrink(&mut self) {
        if self.timed.is_empty() && self.timed.capacity() > 1024 {
            self.timed.shrink_to(64);
        }
        if self.audit_pending.is_empty() && self.audit_pending.capacity() > 1024 {
            self.audit_pending.shrink_to(16);
        }
    }
}
