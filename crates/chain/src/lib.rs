//! EMQX's fold over an ordered chain of ExHook providers, for the three valued hooks
//! (`client.authenticate`, `client.authorize`, `message.publish`), as pure logic.
//!
//! The executor (in `exhook-server`) drives a [`Fold`]: for each provider in the chain it
//! either records that the provider was skipped, feeds it the provider's answer, or reports
//! that the call failed; the fold says whether to go on, and finally what to answer EMQX.
//! The rules are EMQX's (`emqx_exhook.erl` `call_fold`, `emqx_exhook_handler.erl`
//! `merge_responsed_*`, contract §3.3):
//!
//! * `CONTINUE` with a value of the right kind replaces the accumulated value; the next
//!   provider sees it.
//! * `IGNORE`, an unknown response type, an unset value or a value of the wrong kind keep
//!   the accumulated value.
//! * `STOP_AND_RETURN` with a value of the right kind ends the chain with that value
//!   (with a wrong or unset value it is treated as `IGNORE`, as EMQX does).
//! * A failed call applies the provider's `failed_action`: `ignore` goes on unchanged,
//!   `deny` ends the chain with EMQX's deny result.
//! * At the end: `IGNORE` if no provider answered `CONTINUE` (EMQX keeps its own value),
//!   otherwise `CONTINUE` with the folded value.
//!
//! Beside the fold, two pure pieces the executor uses around it: [`shadow`] (a shadow
//! provider's answer against the chain's, as EMQX would read both) and [`cache`] (a
//! provider's decision cache).
#![warn(missing_docs)]

pub mod cache;
pub mod shadow;

use exhook_hooks::ValuedRequest;
use exhook_proto::model::{ValuedResponse, valued_response::ResponsedType, valued_response::Value};

/// What a provider's failure does to the chain (its `failed_action`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum FailedAction {
    /// Stop the chain with EMQX's deny result (EMQX's default).
    #[default]
    Deny,
    /// Skip the provider, keep the value.
    Ignore,
}

/// Whether the executor should call the next provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Call the next provider.
    Next,
    /// The chain has ended; call [`Fold::finish`].
    Stop,
}

/// How one provider's turn went, as the fold saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StepOutcome {
    /// Answered CONTINUE with a usable value: the value was replaced.
    Continue,
    /// Answered IGNORE, or something treated as IGNORE (wrong or missing value).
    Ignore,
    /// Answered STOP_AND_RETURN with a usable value: the chain ended.
    Stop,
    /// Failed, `failed_action = ignore`: skipped.
    FailedIgnored,
    /// Failed, `failed_action = deny`: the chain ended with the deny result.
    FailedDenied,
}

/// How the whole chain ended, for metrics and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Ending {
    /// Ran to the end; no provider answered CONTINUE.
    AllIgnored,
    /// Ran to the end; at least one provider answered CONTINUE.
    Continued,
    /// Provider at this chain position answered STOP_AND_RETURN.
    StoppedBy(usize),
    /// Provider at this chain position failed with `failed_action = deny`.
    DeniedByFailure(usize),
}

/// The fold of one valued hook call. The request is the accumulator, as in EMQX.
#[derive(Debug)]
pub struct Fold<R> {
    acc: R,
    continued: bool,
    ending: Option<(Ending, ResponsedType, Value)>,
}

impl<R: ValuedRequest> Fold<R> {
    /// Starts a fold with the request EMQX sent.
    pub fn new(request: R) -> Self {
        Fold { acc: request, continued: false, ending: None }
    }

    /// The request as folded so far: what the next provider is sent.
    pub fn current(&self) -> &R {
        &self.acc
    }

    /// True once the chain has ended.
    pub fn is_done(&self) -> bool {
        self.ending.is_some()
    }

    /// Feeds the answer of the provider at chain position `position`.
    pub fn on_response(&mut self, position: usize, response: ValuedResponse) -> (Flow, StepOutcome) {
        if self.is_done() {
            return (Flow::Stop, StepOutcome::Ignore);
        }
        let kind = ResponsedType::try_from(response.r#type).ok();
        let (Some(kind @ (ResponsedType::Continue | ResponsedType::StopAndReturn)), Some(value)) =
            (kind, response.value)
        else {
            return (Flow::Next, StepOutcome::Ignore);
        };
        if !self.acc.apply_value(value) {
            return (Flow::Next, StepOutcome::Ignore);
        }
        if kind == ResponsedType::StopAndReturn {
            let value = self.acc.answer();
            self.ending = Some((Ending::StoppedBy(position), ResponsedType::StopAndReturn, value));
            (Flow::Stop, StepOutcome::Stop)
        } else {
            self.continued = true;
            (Flow::Next, StepOutcome::Continue)
        }
    }

    /// Reports that the call to the provider at `position` failed (transport error, gRPC
    /// error status, timeout, or no time left in the caller's deadline).
    pub fn on_failure(&mut self, position: usize, action: FailedAction) -> (Flow, StepOutcome) {
        if self.is_done() {
            return (Flow::Stop, StepOutcome::FailedIgnored);
        }
        match action {
            FailedAction::Ignore => (Flow::Next, StepOutcome::FailedIgnored),
            FailedAction::Deny => {
                let value = self.acc.deny();
                self.ending = Some((Ending::DeniedByFailure(position), ResponsedType::StopAndReturn, value));
                (Flow::Stop, StepOutcome::FailedDenied)
            }
        }
    }

    /// The answer for EMQX, and how the chain ended.
    pub fn finish(self) -> (ValuedResponse, Ending) {
        let (ending, kind, value) = match self.ending {
            Some(e) => e,
            None if self.continued => (Ending::Continued, ResponsedType::Continue, self.acc.answer()),
            None => return (ValuedResponse { r#type: ResponsedType::Ignore as i32, value: None }, Ending::AllIgnored),
        };
        (ValuedResponse { r#type: kind as i32, value: Some(value) }, ending)
    }
}

#[cfg(test)]
mod tests;
