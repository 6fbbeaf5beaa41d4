//! Scripted workloads: a client (B-tree, thin, and later cache or era)
//! supplies its operations, its model and its audit; this module turns it
//! into a [`Workload`] the harnesses drive.
//!
//! A script is generated from a seed: transactions of client operations,
//! each ending in a commit, with aborts and reopenings drawn among the
//! operations. The generator tracks its own model of what the operations
//! may touch and rolls it back at an abort or reopening, as the engine does.

use crate::rng::Rng;
use crate::workload::{Session, Workload};
use pdata::io::BlockDevice;
use std::fmt::{self, Debug};
use std::sync::Arc;

/// Errors from the engine and from the model, as text for reports.
pub(crate) fn e2s(e: impl fmt::Display) -> String {
    e.to_string()
}

/// One step of a script.
#[derive(Clone)]
pub enum Step<O> {
    /// A client operation.
    Op(O),
    Commit,
    /// Drops the transaction; the handle goes back to what is on disk.
    Abort,
    /// Drops the handle and opens the device again.
    Reopen,
}

/// Steps print as the bare operation (`Insert { .. }`, `Commit`): reports
/// name them so.
impl<O: Debug> Debug for Step<O> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::Op(o) => o.fmt(f),
            Step::Commit => f.write_str("Commit"),
            Step::Abort => f.write_str("Abort"),
            Step::Reopen => f.write_str("Reopen"),
        }
    }
}

/// A script of `transactions` transactions of about `ops` steps each (from
/// 1 to 2·ops − 1), every one ending in a commit, drawn by the client from
/// a generator seeded with `seed`.
pub fn generate<C: Client>(
    client: &C,
    seed: u64,
    ops: usize,
    transactions: usize,
) -> Vec<Step<C::Op>> {
    let mut rng = Rng::new(seed);
    let mut g = client.gen_start();
    let mut committed = g.clone();
    let mut grown = 0;
    let mut script = Vec::new();
    for _ in 0..transactions {
        let n = rng.range(1, (2 * ops.max(1) - 1) as u64);
        let mut done = 0;
        while done < n {
            if let Some(step) = client.gen_step(&mut rng, &g, &mut grown) {
                match &step {
                    Step::Op(op) => client.gen_apply(&mut g, &mut committed, op),
                    Step::Commit => committed = g.clone(),
                    Step::Abort | Step::Reopen => g = committed.clone(),
                }
                script.push(step);
                done += 1;
            }
        }
        committed = g.clone();
        script.push(Step::Commit);
    }
    script
}

/// What a workload adds to the harness: its handle on the metadata, its
/// operations and its model of them, and how to audit and read a disk.
pub trait Client: Send + Sync + 'static {
    type Op: Clone + Debug + Send + Sync;
    /// Everything a formatted disk must hold: equal models are the same
    /// transaction's contents.
    type Model: Clone + PartialEq + Debug + Send + Sync;
    type Handle;
    /// Size of the metadata device when a run starts (all zero).
    const DEVICE_BLOCKS: u64;
    /// What the script generator knows of the model (e.g. which keys are
    /// mapped, not to what); rolled back at an abort or reopening.
    type Gen: Clone;

    /// The generator's model of a formatted device.
    fn gen_start(&self) -> Self::Gen;

    /// Draws the next step (`None`: draw again). `grown` counts across the
    /// whole script, aborts included: the clients grow the metadata device
    /// at most twice, so its size stays bounded.
    fn gen_step(&self, rng: &mut Rng, g: &Self::Gen, grown: &mut u32) -> Option<Step<Self::Op>>;

    /// Applies an operation to the generator's model (and to its committed
    /// copy, for an operation that commits).
    fn gen_apply(&self, g: &mut Self::Gen, committed: &mut Self::Gen, op: &Self::Op);

    /// The model `format` commits.
    fn formatted(&self) -> Self::Model;

    /// Formats `dev` and commits [`Client::formatted`].
    fn format(&self, dev: Arc<dyn BlockDevice>) -> Result<Self::Handle, String>;

    /// Opens a formatted `dev` for writing.
    fn open(&self, dev: Arc<dyn BlockDevice>) -> Result<Self::Handle, String>;

    /// What a handle sees once it went back to `committed` (abort,
    /// reopening): by default the model itself. (A cache after an unclean
    /// shutdown sees every mapped block dirty and no hints.)
    fn recovered(&self, committed: &Self::Model) -> Self::Model {
        committed.clone()
    }

    /// What the disk holds once `open` opened it for writing: by default
    /// what it held. (Opening a cache clears its clean-shutdown flag.)
    fn opened(&self, _committed: &mut Self::Model) {}

    /// Switches the seed bug (the pre-fix commit) on.
    fn enable_mutation(&self, h: &mut Self::Handle);

    /// Runs `op` on the handle and on the model (and on the committed
    /// model, for an operation that commits).
    fn apply(
        &self,
        h: &mut Self::Handle,
        model: &mut Self::Model,
        committed: &mut Self::Model,
        op: &Self::Op,
    ) -> Result<(), String>;

    /// What a commit makes durable of `model` (the next transaction).
    fn next_transaction(&self, model: &Self::Model) -> Self::Model;

    /// What `op` makes durable, if it commits.
    fn op_commit_target(&self, _op: &Self::Op, _model: &Self::Model) -> Option<Self::Model> {
        None
    }

    /// Commits the next transaction, moving `model` to it.
    fn commit(&self, h: &mut Self::Handle, model: &mut Self::Model) -> Result<(), String>;

    /// Tries to commit on a handle that must refuse (it is poisoned).
    fn probe_commit(&self, h: &mut Self::Handle, model: &mut Self::Model) -> bool {
        self.commit(h, model).is_ok()
    }

    /// Drops the transaction (the handle goes back to what is on disk).
    fn abort(&self, h: &mut Self::Handle) -> Result<(), String>;

    /// Everything the handle sees, read through it.
    fn read_handle(&self, h: &mut Self::Handle) -> Result<Self::Model, String>;

    /// Opens a formatted (crash) image as recovery would, runs the full
    /// consistency walk and reads everything: any error, damage or leak is
    /// an `Err`.
    fn read_disk(&self, dev: Arc<dyn BlockDevice>) -> Result<Self::Model, String>;

    /// One more operation, on the handle and the model (a commit follows).
    fn extra(&self, h: &mut Self::Handle, model: &mut Self::Model) -> Result<(), String>;

    /// A one-line summary of a model, for reports.
    fn summary(&self, m: &Self::Model) -> String;
}

/// What a disk holds: nothing yet, or a client's model.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Disk<M> {
    Unformatted,
    Formatted(M),
}

/// A client and its script: the [`Workload`] the harnesses drive.
pub struct Scripted<C: Client> {
    client: Arc<C>,
    script: Arc<Vec<Step<C::Op>>>,
}

impl<C: Client> Scripted<C> {
    /// The client with the script generated from `seed` (see [`generate`]).
    pub fn new(client: C, seed: u64, ops: usize, transactions: usize) -> Scripted<C> {
        let script = generate(&client, seed, ops, transactions);
        Scripted {
            client: Arc::new(client),
            script: Arc::new(script),
        }
    }

    pub fn script(&self) -> &[Step<C::Op>] {
        &self.script
    }

    fn session(
        &self,
        dev: Arc<dyn BlockDevice>,
        mut handle: C::Handle,
        mutation: bool,
        committed: C::Model,
    ) -> ScriptedSession<C> {
        if mutation {
            self.client.enable_mutation(&mut handle);
        }
        ScriptedSession {
            client: self.client.clone(),
            script: self.script.clone(),
            dev,
            mutation,
            handle,
            model: self.client.recovered(&committed),
            committed,
        }
    }
}

impl<C: Client> Workload for Scripted<C> {
    type State = Disk<C::Model>;
    type Session = ScriptedSession<C>;

    fn device_blocks(&self) -> u64 {
        C::DEVICE_BLOCKS
    }

    fn nr_steps(&self) -> usize {
        self.script.len()
    }

    fn describe_step(&self, i: usize) -> String {
        format!("step {i} ({:?})", self.script[i])
    }

    fn step_recovers(&self, i: usize) -> bool {
        matches!(self.script[i], Step::Abort | Step::Reopen)
    }

    fn unformatted(&self) -> Self::State {
        Disk::Unformatted
    }

    fn formatted(&self) -> Self::State {
        Disk::Formatted(self.client.formatted())
    }

    fn format(
        &self,
        dev: Arc<dyn BlockDevice>,
        mutation: bool,
    ) -> Result<ScriptedSession<C>, String> {
        let h = self.client.format(dev.clone())?;
        Ok(self.session(dev, h, mutation, self.client.formatted()))
    }

    fn open(
        &self,
        dev: Arc<dyn BlockDevice>,
        mutation: bool,
        committed: Self::State,
    ) -> Result<ScriptedSession<C>, String> {
        let Disk::Formatted(m) = committed else {
            return Err("opening an unformatted device".into());
        };
        let h = self.client.open(dev.clone())?;
        let mut s = self.session(dev, h, mutation, m);
        self.client.opened(&mut s.committed);
        Ok(s)
    }

    fn read_disk(&self, dev: Arc<dyn BlockDevice>) -> Result<Self::State, String> {
        let mut b0 = [0u8; pdata::BLOCK_SIZE];
        dev.read_block(0, &mut b0).map_err(e2s)?;
        if b0.iter().all(|&b| b == 0) {
            return Ok(Disk::Unformatted);
        }
        self.client.read_disk(dev).map(Disk::Formatted)
    }

    fn summary(&self, s: &Self::State) -> String {
        match s {
            Disk::Unformatted => "unformatted".into(),
            Disk::Formatted(m) => self.client.summary(m),
        }
    }
}

/// A live handle running a client's script.
pub struct ScriptedSession<C: Client> {
    client: Arc<C>,
    script: Arc<Vec<Step<C::Op>>>,
    dev: Arc<dyn BlockDevice>,
    mutation: bool,
    handle: C::Handle,
    model: C::Model,
    committed: C::Model,
}

impl<C: Client> ScriptedSession<C> {
    fn commit(&mut self) -> Result<(), String> {
        self.client.commit(&mut self.handle, &mut self.model)?;
        self.committed = self.model.clone();
        Ok(())
    }
}

impl<C: Client> Session for ScriptedSession<C> {
    type State = Disk<C::Model>;

    fn commit_target(&self, i: usize) -> Option<Self::State> {
        match &self.script[i] {
            Step::Commit => Some(self.client.next_transaction(&self.model)),
            Step::Op(op) => self.client.op_commit_target(op, &self.model),
            Step::Abort | Step::Reopen => None,
        }
        .map(Disk::Formatted)
    }

    fn step(&mut self, i: usize) -> Result<(), String> {
        let step = self.script[i].clone();
        match step {
            Step::Op(op) => {
                self.client
                    .apply(&mut self.handle, &mut self.model, &mut self.committed, &op)
            }
            Step::Commit => self.commit(),
            Step::Abort => {
                self.client.abort(&mut self.handle)?;
                self.model = self.client.recovered(&self.committed);
                Ok(())
            }
            Step::Reopen => {
                let mut h = self.client.open(self.dev.clone())?;
                if self.mutation {
                    self.client.enable_mutation(&mut h);
                }
                self.handle = h;
                self.model = self.client.recovered(&self.committed);
                self.client.opened(&mut self.committed);
                Ok(())
            }
        }
    }

    fn committed(&self) -> Self::State {
        Disk::Formatted(self.committed.clone())
    }

    fn probe_commit(&mut self) -> bool {
        self.client.probe_commit(&mut self.handle, &mut self.model)
    }

    fn abort(&mut self) -> Result<(), String> {
        self.client.abort(&mut self.handle)
    }

    fn handle_state(&mut self) -> Result<Self::State, String> {
        self.client
            .read_handle(&mut self.handle)
            .map(Disk::Formatted)
    }

    fn adopt(&mut self, s: Self::State) {
        if let Disk::Formatted(m) = s {
            self.model = m.clone();
            self.committed = m;
        }
    }

    fn extra(&mut self) -> Result<Self::State, String> {
        self.client.extra(&mut self.handle, &mut self.model)?;
        self.commit()?;
        Ok(self.committed())
    }
}

/// Runs a client's script on a memory device, checking the disk against
/// the model after every commit, then the handle and one extra commit;
/// returns the last model the script committed.
#[cfg(test)]
pub(crate) fn check_script<C: Client>(w: &Scripted<C>) -> C::Model {
    let mem = Arc::new(pdata::io::MemoryDevice::new(C::DEVICE_BLOCKS));
    let mut s = w.format(mem.clone(), false).expect("format");
    assert_eq!(w.read_disk(mem.clone()).expect("read"), w.formatted());
    for i in 0..w.nr_steps() {
        s.step(i)
            .unwrap_or_else(|e| panic!("{}: {e}", w.describe_step(i)));
        if matches!(w.script()[i], Step::Commit) {
            let got = w.read_disk(mem.clone()).expect("read");
            assert_eq!(got, s.committed(), "{}", w.describe_step(i));
        }
    }
    let Disk::Formatted(last) = s.committed() else {
        panic!("the script left no committed model")
    };
    assert_eq!(s.handle_state().expect("handle"), s.committed());
    let after = s.extra().expect("extra");
    assert_eq!(w.read_disk(mem).expect("read"), after);
    last
}
