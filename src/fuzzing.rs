//! The bodies of the fuzz targets (`fuzz/`, cargo-fuzz) — one function per target, each taking
//! the raw input and panicking when an invariant breaks. The libFuzzer targets and the replay
//! test of the committed corpus (`tests/fuzz_corpus.rs`) both call these, so what the fuzzer
//! checks and what the default test suite replays cannot drift apart.
//!
//! Not an API: hidden from the docs, and nothing else in the crate uses it. It only calls the
//! same public entry points the proxy calls.
//!
//! SQL targets read the first input byte as the session's settings ([`lex_of`]: which
//! `standard_conforming_strings`, client encoding and transaction status the text is lexed and
//! decided under); the rest is the SQL text.

use std::collections::HashSet;
use std::sync::OnceLock;

use bytes::Bytes;

use crate::protocol::TxStatus;
use crate::protocol::framing::{self, Frame, FrameError, HEADER_LEN};
use crate::protocol::preauth::{self, Gate, MAX_AUTH_LENGTH};
use crate::protocol::startup::{self, InitialPacket, MAX_STARTUP_PACKET};
use crate::rules::{self, Rewrite};
use crate::sql::lexer::{self, ClientEncoding, LexOptions, Lexer, StatementSpan};
use crate::sql::statement::Name;
use crate::sql::{fallback, parse, plpgsql, prefilter};

/// A target's body: panics when an invariant breaks.
pub type Target = fn(&[u8]);

/// Every target, by name: (name, body). The replay test walks `fuzz/corpus/<name>/` with it.
pub const TARGETS: &[(&str, Target)] = &[
    ("frames", frames),
    ("startup_packets", startup_packets),
    ("preauth_frames", preauth_frames),
    ("split", split),
    ("prefilter", prefilter),
    ("fallback", fallback),
    ("understand", understand),
    ("analysis", analysis),
    ("rewrite", rewrite),
    ("overrides", overrides),
    ("plpgsql", plpgsql),
    ("catalog", catalog),
];

const ENCODINGS: [ClientEncoding; 7] = [
    ClientEncoding::AsciiSafe,
    ClientEncoding::Sjis,
    ClientEncoding::Big5,
    ClientEncoding::Gbk,
    ClientEncoding::Uhc,
    ClientEncoding::Gb18030,
    ClientEncoding::Johab,
];

/// Splits an SQL target's input into its settings and its text. The settings byte: bit 0 set
/// = `standard_conforming_strings` off; bits 1–3 the client encoding (`ENCODINGS`, modulo);
/// bits 4–5 the transaction status (idle, in a transaction, failed). `0` is the default
/// session, idle. An empty input is empty SQL.
pub fn lex_of(data: &[u8]) -> (LexOptions, TxStatus, &[u8]) {
    let Some((&b, sql)) = data.split_first() else {
        return (LexOptions::default(), TxStatus::Idle, data);
    };
    let lex = LexOptions {
        standard_conforming_strings: b & 1 == 0,
        encoding: ENCODINGS[usize::from((b >> 1) & 7) % ENCODINGS.len()],
    };
    let tx = match (b >> 4) & 3 {
        0 | 3 => TxStatus::Idle,
        1 => TxStatus::InTransaction,
        _ => TxStatus::Failed,
    };
    (lex, tx, sql)
}

/// `protocol::framing::scan`: a frame's declared length is checked before anything is trusted.
/// The limit is the input's first four bytes (the proxy's `limits.max_message_bytes`), the
/// rest is the stream, scanned frame after frame as the relay does.
pub fn frames(data: &[u8]) {
    let Some((limit, mut buf)) = data.split_first_chunk::<4>() else {
        return;
    };
    let limit = u32::from_be_bytes(*limit) as usize;
    loop {
        match framing::scan(buf, limit) {
            Ok(Frame::NeedHeader) => {
                assert!(buf.len() < HEADER_LEN);
                return;
            }
            Ok(Frame::Header { tag, total }) => {
                assert_eq!(tag, buf[0]);
                assert!(
                    total >= HEADER_LEN && total - 1 <= limit,
                    "{total} > {limit}"
                );
                let declared = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
                assert_eq!(total, declared + 1);
                // The header alone decides.
                assert_eq!(
                    framing::scan(&buf[..HEADER_LEN], limit),
                    Ok(Frame::Header { tag, total })
                );
                let Some(frame) = buf.get(..total) else {
                    return;
                };
                assert_eq!(framing::body(frame).len(), total - HEADER_LEN);
                // What ddlgate writes frames back the same way.
                let mut out = bytes::BytesMut::new();
                framing::put_message(&mut out, tag, framing::body(frame));
                assert_eq!(&out[..], frame);
                // Any body read as a Bind: its parameters, bound again by the backfill guard to
                // its own statement, read back the same (never beyond the frame).
                if let Some(bind) = crate::protocol::frontend::Bind::decode(framing::body(frame))
                    && let Some(params) = bind.params()
                {
                    let again = crate::protocol::frontend::Bind::frame_of(b"p", b"s", params);
                    let again = crate::protocol::frontend::Bind::decode(framing::body(&again))
                        .expect("a rebuilt Bind decodes");
                    assert_eq!(again.params(), Some(params));
                    assert_eq!(again.param_count(), bind.param_count());
                }
                buf = &buf[total..];
            }
            Err(FrameError::BadLength { tag, declared }) => {
                assert_eq!(tag, buf[0]);
                assert!(declared < 4);
                return;
            }
            Err(FrameError::TooLarge { tag, len, limit: l }) => {
                assert_eq!((tag, l), (buf[0], limit));
                assert!(len > limit);
                return;
            }
        }
    }
}

/// The untagged initial packets a connection opens with (SSLRequest, GSSENCRequest,
/// CancelRequest, StartupMessage), cut and decoded as `session::negotiate` does: `packet_len`
/// on the 4-byte length first (nothing is read or allocated past its bound), then
/// `parse_initial` on the complete packet; up to four packets in a row.
pub fn startup_packets(data: &[u8]) {
    let mut rest = data;
    // negotiate() accepts at most one SSLRequest and one GSSENCRequest before the startup
    // packet, so a few packets cover every path.
    for _ in 0..4 {
        let Some(header) = rest.first_chunk::<4>() else {
            return;
        };
        let Ok(len) = startup::packet_len(*header) else {
            return;
        };
        assert!((8..=MAX_STARTUP_PACKET).contains(&len), "{len}");
        let Some(packet) = rest.get(..len) else {
            return;
        };
        rest = &rest[len..];
        match startup::parse_initial(Bytes::copy_from_slice(packet)) {
            Ok(InitialPacket::Startup(s)) => {
                assert_eq!(s.raw.len(), len);
                assert_eq!(s.major(), 3);
                // What the session reads from it for its span and its policy profile.
                let _ = (s.user(), s.database(), s.application_name());
                return;
            }
            Ok(InitialPacket::Cancel(key)) => {
                assert!(key.secret.len() <= 256);
                // The packet ddlgate would forward for it has the same length.
                assert_eq!(key.request_packet().len(), len);
                return;
            }
            Ok(InitialPacket::SslRequest | InitialPacket::GssEncRequest) => {}
            Err(_) => return,
        }
    }
}

/// What a client sends after its startup packet, before it has authenticated, fed through
/// `protocol::preauth::gate` frame after frame as the relay feeds its read buffer: only `p`
/// messages within PostgreSQL's authentication-token cap and bare Terminates pass; the answer
/// depends on the header alone.
pub fn preauth_frames(data: &[u8]) {
    let mut at = 0;
    loop {
        let buf = &data[at..];
        match preauth::gate(buf) {
            Gate::NeedHeader => {
                assert!(buf.len() < HEADER_LEN);
                return;
            }
            Gate::Pass { tag, total } => {
                match tag {
                    b'p' => assert!(total - 1 <= MAX_AUTH_LENGTH && total >= HEADER_LEN),
                    b'X' => assert_eq!(total, HEADER_LEN),
                    other => panic!("passed a frame of type {other}"),
                }
                assert_eq!(buf[0], tag);
                assert_eq!(preauth::gate(&buf[..HEADER_LEN]), Gate::Pass { tag, total });
                if buf.len() < total {
                    // The relay streams the rest of this message as it arrives.
                    return;
                }
                at += total;
            }
            Gate::Hold => {
                assert!(buf.len() >= HEADER_LEN);
                assert_eq!(preauth::gate(&buf[..HEADER_LEN]), Gate::Hold);
                return;
            }
            Gate::Refuse(_) => return,
        }
    }
}

/// Checks the layout [`StatementSpan`] promises: contiguous segments covering the input
/// exactly, separated by one `;` each, so the pieces and separators put back together are the
/// input, nothing lost or reordered.
fn check_spans(sql: &[u8], spans: &[StatementSpan]) {
    assert!(!spans.is_empty(), "at least one segment");
    let mut rebuilt = Vec::with_capacity(sql.len());
    let mut at = 0;
    for (i, s) in spans.iter().enumerate() {
        assert_eq!(s.start, at, "segment {i} starts where the last ended");
        assert!(s.start <= s.end && s.end <= sql.len());
        rebuilt.extend_from_slice(&sql[s.start..s.end]);
        let last = i + 1 == spans.len();
        assert_eq!(s.terminated, !last, "only the last segment is unterminated");
        if !last {
            assert_eq!(sql[s.end], b';', "segment {i} ends at a `;`");
            rebuilt.push(b';');
            at = s.end + 1;
        } else {
            assert_eq!(s.end, sql.len());
        }
        if let Some(first) = s.first {
            assert!(first.start >= s.start && first.end <= s.end);
            assert!(!first.is_comment());
        }
    }
    assert_eq!(rebuilt, sql, "the segments and their `;` are the input");
}

/// The lexer and the splitter (`sql::lexer`): tokens in order, never overlapping, with only
/// whitespace between them and none past the input; the statement segments cover the input
/// exactly (see `check_spans`); the splitter's other entry points agree with it.
pub fn split(data: &[u8]) {
    let (lex, _, sql) = lex_of(data);
    let mut at = 0;
    let mut count = 0usize;
    for t in Lexer::new(sql, lex) {
        assert!(
            t.start >= at && t.start < t.end && t.end <= sql.len(),
            "{t:?}"
        );
        assert!(
            sql[at..t.start]
                .iter()
                .all(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)),
            "only whitespace between tokens"
        );
        at = t.end;
        count += 1;
    }
    assert!(count <= sql.len());
    assert!(
        sql[at..]
            .iter()
            .all(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c))
    );
    let spans = lexer::split_statements(sql, lex);
    check_spans(sql, &spans);
    let non_empty = spans.iter().filter(|s| !s.is_empty()).count();
    assert_eq!(lexer::count_statements(sql, lex), non_empty);
    let mut each = Vec::new();
    lexer::each_statement(sql, lex, |s| each.push(s));
    assert_eq!(each, spans);
    // The tokens kept per statement are those of its segment (comments included).
    let mut i = 0;
    lexer::each_statement_tokens(
        sql,
        lex,
        |_| true,
        |s, kept| {
            assert_eq!(s, spans[i]);
            let kept = kept.expect("a short input keeps its tokens");
            let again: Vec<_> = lexer::tokens(sql, s.start, s.end, lex)
                .into_iter()
                .filter(|t| t.end <= s.end)
                .collect();
            assert_eq!(kept, &again[..], "segment {i}");
            i += 1;
        },
    );
    assert_eq!(i, spans.len());
}

/// The keyword prefilter (`sql::prefilter`), on every segment: a class for each, and never
/// "ordinary traffic" for a statement whose first word is not a DML keyword (fail safe): a
/// DML word may only be raised to a DDL candidate (side-effect markers), a transaction or
/// session word keeps its class, any other word is a DDL candidate or "not a command".
pub fn prefilter(data: &[u8]) {
    use prefilter::StatementClass as C;
    let (lex, _, sql) = lex_of(data);
    for s in lexer::split_statements(sql, lex) {
        let class = prefilter::classify(sql, &s);
        assert!(class.index() < C::ALL.len());
        assert_ne!(prefilter::for_server(class, None), C::NotACommand);
        let Some(first) = s.first else {
            assert_eq!(class, C::Dml, "an empty statement runs nothing");
            continue;
        };
        match first.kind {
            lexer::TokenKind::Word => {
                let word = first.text(sql);
                match prefilter::classify_word(word) {
                    C::Dml => assert!(matches!(class, C::Dml | C::DdlCandidate)),
                    C::DdlCandidate if prefilter::starts_a_command(word) => {
                        assert_eq!(class, C::DdlCandidate)
                    }
                    C::DdlCandidate => assert_eq!(class, C::NotACommand),
                    by_word => assert_eq!(class, by_word),
                }
            }
            lexer::TokenKind::LParen => assert_eq!(class, C::Dml),
            _ => assert_eq!(class, C::DdlCandidate),
        }
    }
}

/// The fallback classifier (`sql::fallback`), on every segment and on arbitrary (clamped)
/// offsets: never panics, and reads nothing outside the span it is given.
pub fn fallback(data: &[u8]) {
    let (lex, _, sql) = lex_of(data);
    for s in lexer::split_statements(sql, lex) {
        let ddl = fallback::classify(sql, s.start, s.end, lex);
        // The bytes after the segment cannot change what it is.
        let alone = fallback::classify(&sql[..s.end], s.start, s.end, lex);
        assert_eq!(ddl, alone);
    }
    // Offsets out of range or reversed are clamped.
    let n = sql.len();
    let _ = fallback::classify(sql, n / 2, n / 3, lex);
    let _ = fallback::classify(sql, n + 1, n + 7, lex);
}

/// The statement front end (`sql::parse::understand`: the depth/size screen, sqlparser, the
/// fallback classifier behind it) on every segment, and the token-sharing entry point agreeing
/// with it.
pub fn understand(data: &[u8]) {
    let (lex, _, sql) = lex_of(data);
    for s in lexer::split_statements(sql, lex) {
        let ddl = parse::understand(sql, s.start, s.end, lex);
        let tokens = lexer::tokens(sql, s.start, s.end, lex);
        assert_eq!(
            parse::understand_tokens(sql, &tokens, s.start, s.end, lex),
            ddl
        );
        let _ = parse::too_complex(sql, s.start, s.end, lex);
        if let Ok(text) = std::str::from_utf8(&sql[s.start..s.end]) {
            let _ = parse::command_tag(text);
        }
    }
}

/// The default policy and a counter set, built once per process.
fn policy() -> &'static (crate::policy::Policy, crate::metrics::Counters) {
    static POLICY: OnceLock<(crate::policy::Policy, crate::metrics::Counters)> = OnceLock::new();
    POLICY.get_or_init(|| {
        (
            crate::policy::Policy::from_config(&crate::config::Config::default()),
            crate::metrics::Counters::default(),
        )
    })
}

/// The whole analysis entry (`analysis::Analyzer::analyze`: split, prefilter, understand, rules,
/// policy, rewrite, recipe, block) for a simple Query under the default policy, without
/// catalog facts; then the same text as a Parse. Never panics; the summary's counts are
/// consistent with the split.
pub fn analysis(data: &[u8]) {
    let (lex, tx, sql) = lex_of(data);
    let (policy, counters) = policy();
    let profile = policy.profile_for("app", "app", "fuzz");
    let ctx = crate::analysis::Context {
        tx,
        lex,
        server_version: Some(170_000),
        pipelined: false,
        tool: None,
    };
    let statements = lexer::count_statements(sql, lex);
    for source in [
        crate::analysis::Source::Query,
        crate::analysis::Source::Parse,
    ] {
        let mut analyzer = crate::analysis::Analyzer::default();
        let (summary, plan) = analyzer.analyze(counters, profile, source, sql, &ctx);
        assert!(summary.statements <= statements);
        assert!(summary.ddl_candidates <= summary.statements);
        assert!(summary.dml <= summary.statements);
        assert!(summary.ddl_unknown <= summary.ddl_candidates);
        let _ = plan.execution();
    }
}

/// The rewrites (`rewrite::apply`): for each statement, every rewrite a rule asks for in its
/// context, and both single-statement rewrites unasked. A rewrite that is carried out must
/// re-parse into the statement it hands back, be clean when re-checked (no rule objects,
/// except a guarded drop asking to stay guarded), and change nothing but the one keyword:
/// `CONCURRENTLY` inserted, or taken out of a `DROP INDEX`.
pub fn rewrite(data: &[u8]) {
    let (lex, tx, sql) = lex_of(data);
    let created: HashSet<Name> = HashSet::new();
    let ctx = rules::Context {
        tx,
        shares_unit: false,
        in_function_body: false,
        server_version: Some(170_000),
        created_in_tx: &created,
        catalog: None,
        later: &[],
        added_not_valid: &[],
    };
    for s in lexer::split_statements(sql, lex) {
        if s.is_empty() {
            continue;
        }
        let ddl = parse::understand(sql, s.start, s.end, lex);
        let mut asked: Vec<Rewrite> = rules::check(&ddl, &ctx)
            .into_iter()
            .filter_map(|f| f.rewrite)
            .collect();
        asked.extend([Rewrite::Concurrently, Rewrite::Guarded]);
        for rw in asked {
            let Ok((text, again)) = crate::rewrite::apply(sql, s.start, s.end, lex, &ddl, rw, &ctx)
            else {
                continue;
            };
            assert_eq!(
                parse::understand(&text, 0, text.len(), lex),
                again,
                "the rewrite re-parses as the statement it hands back"
            );
            let findings = rules::check(&again, &ctx);
            let original = &sql[s.start..s.end];
            match rw {
                Rewrite::Concurrently => {
                    assert!(findings.is_empty(), "re-checked clean: {findings:?}");
                    // text = original[..at] + " CONCURRENTLY" + original[at..], for some `at`.
                    assert_eq!(text.len(), original.len() + 13);
                    let (p, q) = common_ends(&text, original);
                    let inserted = (original.len().saturating_sub(q)..=p.min(original.len()))
                        .any(|at| &text[at..at + 13] == b" CONCURRENTLY");
                    assert!(inserted, "only CONCURRENTLY inserted");
                }
                Rewrite::Guarded => {
                    assert!(
                        findings.iter().all(|f| f.rewrite == Some(Rewrite::Guarded)),
                        "re-checked clean: {findings:?}"
                    );
                    // text = original with one run of bytes (CONCURRENTLY and the space before
                    // it) taken out, or the original itself.
                    assert!(text.len() <= original.len());
                    let (p, q) = common_ends(&text, original);
                    assert!(p + q >= text.len(), "only bytes taken out");
                    if text.len() < original.len() {
                        let cut = &original[p.min(text.len())..][..original.len() - text.len()];
                        assert!(
                            String::from_utf8_lossy(cut)
                                .to_ascii_uppercase()
                                .contains("CONCURRENTLY")
                                || p + q > text.len(),
                            "only CONCURRENTLY taken out"
                        );
                    }
                }
                Rewrite::Steps => panic!("a multi-step rewrite was spliced"),
            }
        }
    }
}

/// Lengths of the longest common prefix and the longest common suffix of `a` and `b`.
fn common_ends(a: &[u8], b: &[u8]) -> (usize, usize) {
    let p = a.iter().zip(b).take_while(|(x, y)| x == y).count();
    let q = a
        .iter()
        .rev()
        .zip(b.iter().rev())
        .take_while(|(x, y)| x == y)
        .count();
    (p, q)
}

/// The override-comment parser (`policy::parse_overrides`) on every segment: an accepted
/// override names at least one rule and gives a reason.
pub fn overrides(data: &[u8]) {
    let (lex, _, sql) = lex_of(data);
    for s in lexer::split_statements(sql, lex) {
        if let Ok(found) = crate::policy::parse_overrides(sql, s.start, s.end, lex) {
            for o in found {
                assert!(!o.rules.is_empty(), "{o:?}");
                assert!(!o.reason.trim().is_empty(), "{o:?}");
            }
        }
    }
}

/// Checks what the PL/pgSQL reader hands its visitor.
#[derive(Default)]
struct Visits {
    open: usize,
    statements: usize,
}

impl plpgsql::Visitor for Visits {
    type Mark = usize;
    fn statement(&mut self, sql: &[u8], start: usize, end: usize) {
        assert!(
            start <= end && end <= sql.len(),
            "{start}..{end} of {}",
            sql.len()
        );
        self.statements += 1;
    }
    fn unverifiable(&mut self, what: String) {
        assert!(!what.is_empty());
    }
    fn template_start(&mut self) -> usize {
        self.open += 1;
        self.open
    }
    fn template_end(&mut self, mark: usize) -> bool {
        assert_eq!(mark, self.open, "templates close in order");
        self.open -= 1;
        true
    }
}

/// The PL/pgSQL and `LANGUAGE sql` body readers (`sql::plpgsql`): statements in bounds,
/// templates opened and closed in order.
pub fn plpgsql(data: &[u8]) {
    let (lex, _, body) = lex_of(data);
    let mut v = Visits::default();
    plpgsql::read_plpgsql(body, lex, &mut v);
    assert_eq!(v.open, 0);
    let mut v = Visits::default();
    plpgsql::read_sql(body, lex, &mut v);
    assert_eq!(v.open, 0);
}

/// The catalog-answer parser (`catalog::parse_facts`, the JSON document of ddlgate's facts
/// query) and the CHECK-definition reader (`catalog::check_proves_not_null`; input: definition,
/// a NUL, the column). Never panics; an answer that parses parses the same again.
pub fn catalog(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Ok(facts) = crate::catalog::parse_facts(&text) {
        assert_eq!(
            format!("{facts:?}"),
            format!(
                "{:?}",
                crate::catalog::parse_facts(&text).expect("parsed once")
            )
        );
    }
    let (definition, column) = text.split_once('\0').unwrap_or((&text, "x"));
    let _ = crate::catalog::check_proves_not_null(definition, column);
}
