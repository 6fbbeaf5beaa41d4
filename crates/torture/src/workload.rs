//! What the harnesses drive: a scripted workload over a handle on metadata,
//! with a model of what each committed transaction holds.

use pdata::io::BlockDevice;
use std::fmt::Debug;
use std::sync::Arc;

/// A workload: a fixed script of steps (operations, commits, aborts,
/// reopenings) generated from a seed, and how to read its state back.
pub trait Workload: Send + Sync {
    /// Everything a crash image must hold: equal states are the same
    /// transaction's contents.
    type State: Clone + PartialEq + Debug + Send + Sync;
    type Session: Session<State = Self::State>;

    /// Size of the metadata device when a run starts (all zero).
    fn device_blocks(&self) -> u64;

    fn nr_steps(&self) -> usize;

    /// A short description of step `i`, for reports.
    fn describe_step(&self, i: usize) -> String;

    /// True for the steps that leave a failed transaction (abort, reopen):
    /// every other step must fail on a poisoned handle.
    fn step_recovers(&self, i: usize) -> bool;

    /// The state of an all-zero device.
    fn unformatted(&self) -> Self::State;

    /// The state `format` commits.
    fn formatted(&self) -> Self::State;

    /// Formats `dev` and commits; with `mutation`, the handle then runs the
    /// pre-fix commit (the seed bug).
    fn format(&self, dev: Arc<dyn BlockDevice>, mutation: bool) -> Result<Self::Session, String>;

    /// Opens `dev`, whose committed state the caller knows to be `committed`.
    fn open(
        &self,
        dev: Arc<dyn BlockDevice>,
        mutation: bool,
        committed: Self::State,
    ) -> Result<Self::Session, String>;

    /// Opens a (crash) image as recovery would, runs the full consistency
    /// walk and reads everything: any error, damage or leak is an `Err`.
    fn read_disk(&self, dev: Arc<dyn BlockDevice>) -> Result<Self::State, String>;

    /// A one-line summary of a state, for reports.
    fn summary(&self, s: &Self::State) -> String;
}

/// A live handle running the script.
pub trait Session {
    type State;

    /// The state the commit inside step `i` makes durable, if step `i`
    /// commits (given the steps before it succeeded).
    fn commit_target(&self, i: usize) -> Option<Self::State>;

    /// Runs step `i`. An `Err` is an error from the engine (or the engine
    /// disagreeing with the model).
    fn step(&mut self, i: usize) -> Result<(), String>;

    /// The last committed state as the model knows it.
    fn committed(&self) -> Self::State;

    /// Tries to commit; true if the engine accepted (it must not once poisoned).
    fn probe_commit(&mut self) -> bool;

    /// Drops the transaction (the handle goes back to what is on disk).
    fn abort(&mut self) -> Result<(), String>;

    /// Everything the handle sees, read through it.
    fn handle_state(&mut self) -> Result<Self::State, String>;

    /// Takes `s` as both the committed and the current state of the model.
    fn adopt(&mut self, s: Self::State);

    /// One more operation and a commit; returns the state now committed.
    fn extra(&mut self) -> Result<Self::State, String>;
}

/// The states a crash image may hold at some moment: the last committed
/// transaction, and the one whose commit is in flight (or failed).
pub fn accepts<S: PartialEq>(accepted: &[S], s: &S) -> bool {
    accepted.iter().any(|a| a == s)
}

/// Adds `s` to `set` unless it is there already.
pub fn add_state<S: PartialEq + Clone>(set: &mut Vec<S>, s: &S) {
    if !set.contains(s) {
        set.push(s.clone());
    }
}
