//! When a call goes on to the next control-service instance. Every instance shares one
//! configuration (in ZooKeeper), so any may serve a call; but a call must never be carried out
//! twice. So a call moves on only when the instance certainly did nothing:
//!
//! - no connection could be opened (refused, unknown host, no connection in time, a reset or
//!   a TLS failure during the handshake): nothing was sent, whatever the method;
//! - it answered 503: it lost its store's quorum and changed nothing, whatever the method;
//! - the request was sent and then no answer came (a timeout, a reset): only for GET and HEAD,
//!   which change nothing — a POST may have been carried out before the answer was lost.
//!
//! A server whose certificate our `cluster.crt` did not sign, or that refuses ours, is never a
//! reason to move on: every instance has the same certificates, so that is a server of another
//! cluster or a wrong `cluster.crt`, a configuration error that trying elsewhere would hide.
//!
//! Whether a request was sent is known exactly, not guessed from the error: a
//! connector last in ureq's chain (after TCP and TLS, so only once the handshake is done) wraps
//! every connection, and the wrapper notes on the calling thread that request bytes left.
//! ureq's blocking calls run on the caller's thread, pooled connections included.

use std::cell::Cell;
use std::io::ErrorKind;

use ureq::unversioned::transport::{Buffers, ConnectionDetails, Connector, NextTimeout, Transport};

use super::{ClientError, RawResponse, TransportProblem};

thread_local! {
    /// Whether the call running on this thread has written any of its request.
    static SENT: Cell<bool> = const { Cell::new(false) };
}

/// Runs one attempt; its outcome, and whether any of the request left this machine.
pub(super) fn watching<T>(attempt: impl FnOnce() -> T) -> (T, bool) {
    SENT.set(false);
    let outcome = attempt();
    (outcome, SENT.get())
}

/// What one instance's outcome means for the call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Verdict {
    /// An answer (whatever its status): the call ends with it.
    Answered,
    /// This instance did nothing: the next one may be tried.
    TryNext { reason: String },
    /// Trying another instance would be wrong: the call ends here (and, if `others_left`, the
    /// reason says why).
    Stop { reason: String },
}

/// The verdict on `outcome`, an attempt of `method` that did or did not send its request,
/// with or without other instances left to try.
pub(super) fn verdict(
    method: &str,
    outcome: &Result<RawResponse, ClientError>,
    sent: bool,
    others_left: bool,
) -> Verdict {
    let error = match outcome {
        Ok(response) if response.status == 503 => {
            let reason = format!("unavailable (503): {}", super::description(response));
            return Verdict::TryNext { reason };
        }
        Ok(_) => return Verdict::Answered,
        Err(error) => error,
    };
    let Some(problem) = error.transport_problem() else { return Verdict::Answered };
    let reason = reason(problem, error, sent);
    let stop = |why: String| Verdict::Stop {
        reason: if others_left { format!("{reason}; {why}") } else { reason.clone() },
    };
    match problem {
        TransportProblem::UntrustedServer | TransportProblem::CertificateRefused => stop(
            "every instance has the same certificates, so this is a server of another cluster \
             or a wrong cluster.crt: a configuration error; no other host was tried"
                .to_owned(),
        ),
        _ if !sent || matches!(method, "GET" | "HEAD") => Verdict::TryNext { reason },
        _ => stop(format!(
            "the request was sent and this instance may have carried it out, so a {method} is \
             not repeated on another one"
        )),
    }
}

/// Why an instance did not answer, in a few words.
fn reason(problem: TransportProblem, error: &ClientError, sent: bool) -> String {
    match problem {
        TransportProblem::Refused => "connection refused".to_owned(),
        TransportProblem::UnknownHost => "unknown host".to_owned(),
        TransportProblem::TimedOut if sent => "no answer in time".to_owned(),
        TransportProblem::TimedOut => "no connection in time".to_owned(),
        TransportProblem::UntrustedServer => {
            "its certificate is not signed by our cluster.crt".to_owned()
        }
        TransportProblem::CertificateRefused => "it refused our certificate".to_owned(),
        TransportProblem::Tls | TransportProblem::Other => match error {
            ClientError::Transport { source, .. } => closed(source).unwrap_or(source.to_string()),
            other => other.to_string(),
        },
    }
}

/// A connection that ended under a call, in plain words (rustls and the OS say it at length).
fn closed(error: &ureq::Error) -> Option<String> {
    let ureq::Error::Io(io) = error else { return None };
    match io.kind() {
        ErrorKind::UnexpectedEof | ErrorKind::BrokenPipe => Some("connection closed".to_owned()),
        ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted => {
            Some("connection reset".to_owned())
        }
        _ => None,
    }
}

/// Last in the connector chain: wraps every connection once TCP and TLS are up.
#[derive(Debug)]
pub(super) struct WatchSends;

impl Connector<Box<dyn Transport>> for WatchSends {
    type Out = Watched;

    fn connect(
        &self,
        _: &ConnectionDetails,
        chained: Option<Box<dyn Transport>>,
    ) -> Result<Option<Watched>, ureq::Error> {
        Ok(chained.map(Watched))
    }
}

/// A connection that notes, on the calling thread, when request bytes leave through it.
#[derive(Debug)]
pub(super) struct Watched(Box<dyn Transport>);

impl Transport for Watched {
    fn buffers(&mut self) -> &mut dyn Buffers {
        self.0.buffers()
    }

    fn transmit_output(&mut self, amount: usize, timeout: NextTimeout) -> Result<(), ureq::Error> {
        let result = self.0.transmit_output(amount, timeout);
        // A write that failed left the request incomplete, which no server acts on.
        if result.is_ok() && amount > 0 {
            SENT.set(true);
        }
        result
    }

    fn await_input(&mut self, timeout: NextTimeout) -> Result<bool, ureq::Error> {
        self.0.await_input(timeout)
    }

    fn is_open(&mut self) -> bool {
        self.0.is_open()
    }

    fn is_tls(&self) -> bool {
        self.0.is_tls()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn transport(source: ureq::Error) -> Result<RawResponse, ClientError> {
        Err(ClientError::Transport {
            method: "POST".into(),
            path: "/v1/configuration/datasets".into(),
            address: "10.0.0.1:4523".into(),
            source: Box::new(source),
        })
    }

    fn answer(status: u16, body: &str) -> Result<RawResponse, ClientError> {
        Ok(RawResponse { status, headers: Default::default(), body: body.as_bytes().to_vec() })
    }

    fn refused() -> ureq::Error {
        ureq::Error::Io(std::io::ErrorKind::ConnectionRefused.into())
    }

    fn reset() -> ureq::Error {
        ureq::Error::Io(std::io::ErrorKind::ConnectionReset.into())
    }

    fn timeout() -> ureq::Error {
        ureq::Error::Timeout(ureq::Timeout::Global)
    }

    fn moves_on(verdict: Verdict) -> bool {
        matches!(verdict, Verdict::TryNext { .. })
    }

    #[test]
    fn any_answer_but_503_ends_the_call() {
        for status in [200, 201, 404, 409, 500] {
            assert_eq!(verdict("POST", &answer(status, "{}"), true, true), Verdict::Answered);
        }
    }

    #[test]
    fn a_503_moves_on_whatever_the_method_and_keeps_the_description() {
        let body = r#"{"description": "no ZooKeeper quorum"}"#;
        for method in ["GET", "POST", "DELETE"] {
            let verdict = verdict(method, &answer(503, body), true, true);
            let reason = "unavailable (503): no ZooKeeper quorum".to_owned();
            assert_eq!(verdict, Verdict::TryNext { reason });
        }
    }

    #[test]
    fn a_connection_never_opened_moves_on_whatever_the_method() {
        for method in ["GET", "POST", "DELETE"] {
            for error in [refused(), reset(), timeout(), ureq::Error::HostNotFound] {
                assert!(moves_on(verdict(method, &transport(error), false, true)), "{method}");
            }
        }
        let verdict = verdict("POST", &transport(refused()), false, true);
        assert_eq!(verdict, Verdict::TryNext { reason: "connection refused".into() });
        let verdict = super::verdict("GET", &transport(reset()), true, true);
        assert_eq!(verdict, Verdict::TryNext { reason: "connection reset".into() });
    }

    #[test]
    fn a_request_sent_and_unanswered_moves_on_only_if_it_changes_nothing() {
        for error in [reset, timeout] {
            assert!(moves_on(verdict("GET", &transport(error()), true, true)));
            assert!(moves_on(verdict("HEAD", &transport(error()), true, true)));
            for method in ["POST", "PUT", "DELETE"] {
                let verdict = verdict(method, &transport(error()), true, true);
                let Verdict::Stop { reason } = verdict else { panic!("{method}: {verdict:?}") };
                assert!(reason.contains(&format!("a {method} is not repeated")), "{reason}");
            }
        }
        let verdict = verdict("GET", &transport(timeout()), true, true);
        assert_eq!(verdict, Verdict::TryNext { reason: "no answer in time".into() });
        let last = super::verdict("POST", &transport(timeout()), true, false);
        assert_eq!(
            last,
            Verdict::Stop { reason: "no answer in time".into() },
            "nothing to explain"
        );
    }

    #[test]
    fn a_server_of_another_cluster_never_moves_on() {
        let untrusted = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        let verdict = verdict("GET", &transport(ureq::Error::Rustls(untrusted)), false, true);
        let Verdict::Stop { reason } = verdict else { panic!("{verdict:?}") };
        assert!(reason.starts_with("its certificate is not signed by our cluster.crt"), "{reason}");
        assert!(reason.contains("configuration error"), "{reason}");
    }
}
