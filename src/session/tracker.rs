//! The session's protocol state, as the server sees it, from message tags alone: whether the
//! session is past authentication, how many ReadyForQuery messages the server owes, where
//! protocol units begin and end (a simple Query, a FunctionCall, or extended-protocol messages
//! up to Sync), how many Executes the open unit holds, and the transaction status.
//!
//! The relay feeds it every client tag it forwards and every ReadyForQuery it reads — its own
//! and those of ddlgate's side-channel queries — and asks it when the server is idle. It decodes
//! nothing and does no I/O, so it is tested here message by message.

use crate::metrics::UnitKind;
use crate::protocol::{TxStatus, frontend};
use crate::sql::{ClientEncoding, LexOptions};

/// What the server reported about itself in ParameterStatus messages, as far as ddlgate's
/// decisions depend on it.
#[derive(Debug, Default)]
pub(crate) struct ServerParams {
    /// How to lex SQL the way the server will (`standard_conforming_strings`,
    /// `client_encoding`).
    pub lex: LexOptions,
    /// `server_version` as reported.
    pub version: Option<String>,
    /// `server_version` as a number, for version-aware rules.
    pub version_num: Option<u32>,
}

impl ServerParams {
    pub(crate) fn on_parameter_status(&mut self, name: &[u8], value: &[u8]) {
        match name {
            b"standard_conforming_strings" => self.lex.standard_conforming_strings = value == b"on",
            b"client_encoding" => {
                self.lex.encoding = ClientEncoding::from_pg_name(&String::from_utf8_lossy(value));
            }
            b"server_version" => {
                let v = String::from_utf8_lossy(value).into_owned();
                self.version_num = crate::analysis::parse_server_version(&v);
                self.version = Some(v);
            }
            _ => {}
        }
    }
}

/// Protocol state of one session.
#[derive(Debug, Default)]
pub(crate) struct Tracker {
    /// The first ReadyForQuery arrived: authentication is over.
    ready: bool,
    /// From the last ReadyForQuery.
    tx: TxStatus,
    /// Transactions ended so far (status back to idle): prepared DDL is decided again after one.
    transactions_ended: u64,
    /// ReadyForQuery messages owed by the server: one per Query, Sync and FunctionCall
    /// forwarded (and per query of ddlgate's own), minus Syncs the server ignores during COPY
    /// FROM STDIN. Zero means the server is idle, waiting for the client.
    owed: u32,
    /// Syncs forwarded since the last Query/Execute/FunctionCall. PostgreSQL ignores Sync while
    /// in copy-in mode (libpq sends one right after the COPY's Execute and another after
    /// CopyDone), so when the client ends a COPY these Syncs are owed no ReadyForQuery.
    syncs_since_command: u32,
    /// Executes in the open extended-protocol unit. More than one means a pipeline, which the
    /// server runs as one implicit transaction.
    unit_executes: u32,
    /// An extended-protocol unit is open: messages sent since the last Sync. ddlgate never
    /// slips a query of its own into an open unit.
    unit_open: bool,
    /// Protocol units begun (each Sync and each simple Query or FunctionCall ends one): a
    /// prepared statement whose decision rests on fresh facts is decided again in a later one.
    units_begun: u64,
    /// Kind of the open extended-protocol unit, from its Parse messages (and guarded Binds).
    unit_kind: Option<UnitKind>,
    /// The client said Terminate: a following disconnect is orderly.
    terminated: bool,
}

/// What a client message did to the protocol state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ClientEvent {
    /// Nothing the relay acts on.
    None,
    /// A simple Query was sent: a unit, owed one ReadyForQuery.
    Query,
    /// A FunctionCall was sent: a unit, owed one ReadyForQuery. A function called by OID may
    /// change any setting.
    FunctionCall,
    /// A Sync closed an extended-protocol unit, owed one ReadyForQuery. A unit that only binds
    /// and executes statements prepared earlier counts as DML: what they are is not looked at
    /// again.
    Sync { kind: UnitKind, executes: u32 },
    /// CopyDone or CopyFail ended COPY FROM STDIN: the Syncs sent since the COPY began were
    /// ignored by the server, and are owed nothing.
    CopyEnded { ignored_syncs: u32 },
}

impl Tracker {
    /// Bookkeeping for one client message, by its tag, as it is forwarded.
    pub(crate) fn client(&mut self, tag: u8) -> ClientEvent {
        match tag {
            frontend::QUERY | frontend::FUNCTION_CALL => {
                self.units_begun += 1;
                self.owed += 1;
                self.syncs_since_command = 0;
                if tag == frontend::QUERY {
                    ClientEvent::Query
                } else {
                    ClientEvent::FunctionCall
                }
            }
            frontend::EXECUTE => {
                self.unit_executes += 1;
                self.syncs_since_command = 0;
                self.unit_open = true;
                ClientEvent::None
            }
            frontend::PARSE
            | frontend::BIND
            | frontend::DESCRIBE
            | frontend::CLOSE
            | frontend::FLUSH => {
                self.unit_open = true;
                ClientEvent::None
            }
            frontend::SYNC => {
                self.units_begun += 1;
                self.owed += 1;
                self.syncs_since_command += 1;
                let event = ClientEvent::Sync {
                    kind: self.unit_kind.take().unwrap_or(UnitKind::Dml),
                    executes: self.unit_executes,
                };
                self.unit_executes = 0;
                self.unit_open = false;
                event
            }
            frontend::COPY_DONE | frontend::COPY_FAIL => {
                // Only a client in copy-in mode sends these.
                let ignored_syncs = std::mem::take(&mut self.syncs_since_command);
                self.owed = self.owed.saturating_sub(ignored_syncs);
                ClientEvent::CopyEnded { ignored_syncs }
            }
            frontend::TERMINATE => {
                self.terminated = true;
                ClientEvent::None
            }
            _ => ClientEvent::None,
        }
    }

    /// A ReadyForQuery arrived (its status goes to [`Self::set_tx`]). Returns true for the
    /// first one, which ends authentication and was owed to no message of the client's.
    pub(crate) fn ready_for_query(&mut self) -> bool {
        if !self.ready {
            self.ready = true;
            return true;
        }
        self.owed = self.owed.saturating_sub(1);
        false
    }

    /// The transaction status from a ReadyForQuery; true when it ended a transaction.
    pub(crate) fn set_tx(&mut self, status: TxStatus) -> bool {
        let ended = status == TxStatus::Idle && self.tx != TxStatus::Idle;
        if ended {
            self.transactions_ended += 1;
        }
        self.tx = status;
        ended
    }

    /// A query of ddlgate's own was sent: it is owed a ReadyForQuery, so while it runs the
    /// session counts as running a statement (a vanishing client gets it cancelled).
    pub(crate) fn own_query_sent(&mut self) {
        self.owed += 1;
    }

    /// The ReadyForQuery of a query of ddlgate's own (or of a guarded Query), with its status;
    /// true when it ended a transaction.
    pub(crate) fn own_query_answered(&mut self, status: TxStatus) -> bool {
        self.owed = self.owed.saturating_sub(1);
        self.set_tx(status)
    }

    /// A guarded Query was handed over to the relay in COPY FROM STDIN mode: its
    /// ReadyForQuery, after the copy, is the one thing owed.
    pub(crate) fn copy_handed_over(&mut self) {
        self.owed = 1;
    }

    /// A Query (or the first message of a unit) is taken by the guard instead of being
    /// forwarded: it counts as a command for the COPY bookkeeping.
    pub(crate) fn command_taken(&mut self) {
        self.syncs_since_command = 0;
    }

    /// A whole extended-protocol unit (up to its Sync) is taken by the DDL lane instead of
    /// being forwarded: it begins a unit, whose replies the lane gives the client itself.
    pub(crate) fn unit_taken(&mut self) {
        self.units_begun += 1;
        self.syncs_since_command = 0;
        // What its Parse noted belongs to it, not to the next unit.
        self.unit_kind = None;
        self.unit_executes = 0;
    }

    /// A Parse of the open unit was analysed as `kind` (DDL wins over DML, DML over the rest).
    pub(crate) fn note_unit_kind(&mut self, kind: UnitKind) {
        self.unit_kind = Some(kind.merge(self.unit_kind));
    }

    pub(crate) fn is_ready(&self) -> bool {
        self.ready
    }

    pub(crate) fn tx(&self) -> TxStatus {
        self.tx
    }

    /// An extended-protocol unit is open (messages sent since the last Sync).
    pub(crate) fn unit_open(&self) -> bool {
        self.unit_open
    }

    pub(crate) fn owed(&self) -> u32 {
        self.owed
    }

    /// Everything forwarded was answered and no unit is open: the server waits for the client.
    pub(crate) fn all_answered(&self) -> bool {
        self.owed == 0 && !self.unit_open
    }

    /// The open extended-protocol unit already holds an Execute: a statement parsed now runs
    /// pipelined, in the server's implicit transaction.
    pub(crate) fn pipelined(&self) -> bool {
        self.unit_executes > 0
    }

    pub(crate) fn units_begun(&self) -> u64 {
        self.units_begun
    }

    pub(crate) fn transactions_ended(&self) -> u64 {
        self.transactions_ended
    }

    pub(crate) fn terminated(&self) -> bool {
        self.terminated
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::frontend::*;

    /// A tracker past authentication.
    fn ready() -> Tracker {
        let mut t = Tracker::default();
        assert!(!t.is_ready());
        assert!(
            t.ready_for_query(),
            "the first ReadyForQuery ends authentication"
        );
        assert!(t.is_ready());
        assert!(t.all_answered());
        t
    }

    #[test]
    fn server_parameters_set_lexing_and_version() {
        let mut p = ServerParams::default();
        p.on_parameter_status(b"standard_conforming_strings", b"off");
        assert!(!p.lex.standard_conforming_strings);
        p.on_parameter_status(b"standard_conforming_strings", b"on");
        assert!(p.lex.standard_conforming_strings);
        p.on_parameter_status(b"server_version", b"16.2 (Debian 16.2-1)");
        assert_eq!(p.version.as_deref(), Some("16.2 (Debian 16.2-1)"));
        assert!(p.version_num.is_some_and(|v| v >= 160_000));
        p.on_parameter_status(b"client_encoding", b"UTF8");
        p.on_parameter_status(b"TimeZone", b"UTC");
    }

    #[test]
    fn a_simple_query_is_one_unit() {
        let mut t = ready();
        assert_eq!(t.client(QUERY), ClientEvent::Query);
        assert_eq!((t.owed(), t.units_begun()), (1, 1));
        assert!(!t.ready_for_query());
        assert!(!t.set_tx(TxStatus::InTransaction));
        assert!(t.all_answered());
        assert_eq!(t.client(QUERY), ClientEvent::Query);
        assert!(!t.ready_for_query());
        assert!(t.set_tx(TxStatus::Idle), "COMMIT ended the transaction");
        assert_eq!(t.transactions_ended(), 1);
    }

    #[test]
    fn an_extended_unit_with_several_executes_is_a_pipeline() {
        let mut t = ready();
        for tag in [PARSE, BIND, DESCRIBE, EXECUTE] {
            assert_eq!(t.client(tag), ClientEvent::None);
        }
        assert!(t.pipelined());
        assert_eq!(t.owed(), 0, "nothing is answered before Sync");
        assert!(!t.all_answered(), "the unit is open");
        t.note_unit_kind(UnitKind::Dml);
        t.note_unit_kind(UnitKind::Ddl);
        t.note_unit_kind(UnitKind::Other);
        t.client(BIND);
        t.client(EXECUTE);
        assert_eq!(
            t.client(SYNC),
            ClientEvent::Sync {
                kind: UnitKind::Ddl,
                executes: 2
            }
        );
        assert!(!t.pipelined());
        assert_eq!(t.owed(), 1);
        t.ready_for_query();
        assert!(t.all_answered());
    }

    #[test]
    fn a_unit_taken_whole_leaves_nothing_to_the_next() {
        let mut t = ready();
        t.client(QUERY);
        t.ready_for_query();
        t.note_unit_kind(UnitKind::Ddl);
        t.unit_taken();
        assert_eq!(t.units_begun(), 2);
        assert!(t.all_answered(), "nothing of it was forwarded");
        t.client(BIND);
        t.client(EXECUTE);
        assert_eq!(
            t.client(SYNC),
            ClientEvent::Sync {
                kind: UnitKind::Dml,
                executes: 1
            }
        );
    }

    #[test]
    fn a_unit_of_binds_only_counts_as_dml() {
        let mut t = ready();
        t.client(BIND);
        t.client(EXECUTE);
        assert_eq!(
            t.client(SYNC),
            ClientEvent::Sync {
                kind: UnitKind::Dml,
                executes: 1
            }
        );
    }

    #[test]
    fn pipelined_syncs_are_each_owed_a_ready_for_query() {
        let mut t = ready();
        for _ in 0..3 {
            t.client(PARSE);
            t.client(BIND);
            t.client(EXECUTE);
            t.client(SYNC);
        }
        assert_eq!((t.owed(), t.units_begun()), (3, 3));
        t.ready_for_query();
        t.ready_for_query();
        assert!(!t.all_answered());
        t.ready_for_query();
        assert!(t.all_answered());
    }

    #[test]
    fn an_error_in_a_unit_is_answered_at_its_sync() {
        // After an error the server discards messages until Sync, then answers the Sync alone:
        // the tracker's count stays the server's.
        let mut t = ready();
        t.client(PARSE);
        t.client(BIND);
        t.client(EXECUTE);
        t.client(EXECUTE);
        // (ErrorResponse for the first Execute; the rest is discarded.)
        t.client(SYNC);
        assert_eq!(t.owed(), 1);
        t.ready_for_query();
        assert!(!t.set_tx(TxStatus::Idle));
        assert!(t.all_answered());
    }

    #[test]
    fn syncs_during_copy_in_are_owed_nothing() {
        let mut t = ready();
        // libpq: Parse/Bind/Execute of COPY … FROM STDIN, Sync; CopyData…, CopyDone, Sync.
        t.client(PARSE);
        t.client(BIND);
        t.client(EXECUTE);
        t.client(SYNC);
        t.client(COPY_DATA);
        assert_eq!(t.owed(), 1, "one Sync so far");
        assert_eq!(
            t.client(COPY_DONE),
            ClientEvent::CopyEnded { ignored_syncs: 1 }
        );
        assert_eq!(t.owed(), 0);
        t.client(SYNC);
        assert_eq!(t.owed(), 1);
        t.ready_for_query();
        assert!(t.all_answered());
        // A simple-protocol COPY ends with CopyDone and nothing was ignored.
        t.client(QUERY);
        assert_eq!(
            t.client(COPY_FAIL),
            ClientEvent::CopyEnded { ignored_syncs: 0 }
        );
        assert_eq!(t.owed(), 1);
    }

    #[test]
    fn a_function_call_is_a_unit_and_terminate_is_remembered() {
        let mut t = ready();
        assert_eq!(t.client(FUNCTION_CALL), ClientEvent::FunctionCall);
        assert_eq!((t.owed(), t.units_begun()), (1, 1));
        t.ready_for_query();
        assert!(!t.terminated());
        assert_eq!(t.client(TERMINATE), ClientEvent::None);
        assert!(t.terminated());
    }

    #[test]
    fn ddlgate_queries_are_owed_and_answered_like_the_clients() {
        let mut t = ready();
        t.set_tx(TxStatus::InTransaction);
        t.own_query_sent();
        assert_eq!(t.owed(), 1);
        assert!(t.own_query_answered(TxStatus::Idle));
        assert_eq!(
            (t.owed(), t.tx(), t.transactions_ended()),
            (0, TxStatus::Idle, 1)
        );
        // A guarded Query handed over in COPY mode: its ReadyForQuery is what is owed.
        t.own_query_sent();
        t.copy_handed_over();
        assert_eq!(t.owed(), 1);
        t.client(SYNC);
        t.command_taken();
        assert_eq!(
            t.client(COPY_DONE),
            ClientEvent::CopyEnded { ignored_syncs: 0 }
        );
    }
}
