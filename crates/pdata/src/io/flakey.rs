//! A fault-injecting device over any other: it fails reads, writes or
//! flushes by rule, silently drops writes (like dm-flakey's `drop_writes`)
//! or corrupts one byte of the data (like its `corrupt_bio_byte`).
//!
//! Every call is one I/O. Rules are checked in the order they were added;
//! the first that fires decides what happens to the I/O. Each rule counts
//! the I/Os it looks at (those of its kinds), so "the 3rd flush" is
//! `Rule::fail(IoKinds::FLUSH, Trigger::Nth(2))`.
//!
//! A failed write or flush never reaches the device below; a dropped write
//! does not either, but the caller is told it succeeded.

use super::BlockDevice;
use crate::Block;
use parking_lot::Mutex;
use rustc_hash::FxHashSet;
use std::io;
use std::sync::Arc;

/// The kind of one I/O.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IoKind {
    Read,
    Write,
    Flush,
}

/// A set of I/O kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IoKinds(u8);

impl IoKinds {
    pub const READ: IoKinds = IoKinds(1);
    pub const WRITE: IoKinds = IoKinds(2);
    pub const FLUSH: IoKinds = IoKinds(4);
    pub const ALL: IoKinds = IoKinds(7);

    pub fn contains(self, kind: IoKind) -> bool {
        let bit = match kind {
            IoKind::Read => 1,
            IoKind::Write => 2,
            IoKind::Flush => 4,
        };
        self.0 & bit != 0
    }
}

impl std::ops::BitOr for IoKinds {
    type Output = IoKinds;
    fn bitor(self, rhs: IoKinds) -> IoKinds {
        IoKinds(self.0 | rhs.0)
    }
}

/// When a rule fires, counting only the I/Os of the rule's kinds, from 0.
#[derive(Debug, Clone)]
pub enum Trigger {
    /// The k-th I/O only.
    Nth(u64),
    /// The k-th I/O and every one after it.
    From(u64),
    /// Every I/O that touches one of these blocks (flushes never do).
    Blocks(FxHashSet<u64>),
    /// Each I/O with this probability, from a seeded generator: the same
    /// seed and the same sequence of I/O give the same faults.
    Random { seed: u64, probability: f64 },
    /// Every I/O.
    Always,
}

/// What happens to an I/O a rule fires on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The I/O fails with an error and does nothing.
    Fail,
    /// Writes and flushes are not passed on but reported done. Reads are
    /// not affected.
    Drop,
    /// Byte `offset` (counted from the start of the I/O's first block) is
    /// set to `value`: in the data written, or in the data read.
    /// Flushes are not affected.
    Corrupt { offset: usize, value: u8 },
}

/// One fault-injection rule.
#[derive(Debug, Clone)]
pub struct Rule {
    pub kinds: IoKinds,
    pub trigger: Trigger,
    pub fault: Fault,
}

impl Rule {
    pub fn new(kinds: IoKinds, trigger: Trigger, fault: Fault) -> Rule {
        Rule {
            kinds,
            trigger,
            fault,
        }
    }

    pub fn fail(kinds: IoKinds, trigger: Trigger) -> Rule {
        Rule::new(kinds, trigger, Fault::Fail)
    }

    /// Drops writes (dm-flakey's `drop_writes`).
    pub fn drop_writes(trigger: Trigger) -> Rule {
        Rule::new(IoKinds::WRITE, trigger, Fault::Drop)
    }

    /// Corrupts byte `offset` of written data (dm-flakey's `corrupt_bio_byte`).
    pub fn corrupt_writes(trigger: Trigger, offset: usize, value: u8) -> Rule {
        Rule::new(IoKinds::WRITE, trigger, Fault::Corrupt { offset, value })
    }
}

/// A fault that was injected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Injection {
    /// Index of the I/O among all I/Os of the device (from 0).
    pub io: u64,
    pub kind: IoKind,
    /// First block of a read or write (0 for a flush).
    pub block: u64,
    /// Number of blocks (0 for a flush).
    pub nr_blocks: usize,
    pub fault: Fault,
}

struct RuleState {
    rule: Rule,
    seen: u64,
    rng: u64,
}

impl RuleState {
    /// Whether the rule fires on this I/O (the I/O is of the rule's kinds).
    fn fires(&mut self, first: u64, nr_blocks: usize) -> bool {
        let n = self.seen;
        self.seen += 1;
        match &self.rule.trigger {
            Trigger::Nth(k) => n == *k,
            Trigger::From(k) => n >= *k,
            Trigger::Blocks(set) => (first..first + nr_blocks as u64).any(|b| set.contains(&b)),
            Trigger::Random { probability, .. } => {
                let x = splitmix64(&mut self.rng);
                // 53 random bits as a fraction in [0, 1).
                ((x >> 11) as f64 / (1u64 << 53) as f64) < *probability
            }
            Trigger::Always => true,
        }
    }
}

fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[derive(Default)]
struct Counters {
    ios: u64,
    reads: u64,
    writes: u64,
    flushes: u64,
}

/// Called with every injected fault, at the moment it is injected.
pub type InjectionHook = Arc<dyn Fn(&Injection) + Send + Sync>;

struct State {
    rules: Vec<RuleState>,
    enabled: bool,
    counters: Counters,
    injected: Vec<Injection>,
    hook: Option<InjectionHook>,
}

/// A device that injects faults into the I/O it passes to `inner`.
pub struct FlakeyDevice {
    inner: Arc<dyn BlockDevice>,
    state: Mutex<State>,
}

/// I/O counts seen by a [`FlakeyDevice`] (faulty ones included).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct IoCounts {
    pub ios: u64,
    pub reads: u64,
    pub writes: u64,
    pub flushes: u64,
}

fn injected_error(kind: IoKind, io: u64) -> io::Error {
    io::Error::other(format!("flakey: injected {kind:?} error (I/O #{io})").to_lowercase())
}

impl FlakeyDevice {
    /// A device that passes everything on until rules are added.
    pub fn new(inner: Arc<dyn BlockDevice>) -> Self {
        FlakeyDevice {
            inner,
            state: Mutex::new(State {
                rules: Vec::new(),
                enabled: true,
                counters: Counters::default(),
                injected: Vec::new(),
                hook: None,
            }),
        }
    }

    pub fn with_rule(inner: Arc<dyn BlockDevice>, rule: Rule) -> Self {
        let d = FlakeyDevice::new(inner);
        d.add_rule(rule);
        d
    }

    pub fn inner(&self) -> &Arc<dyn BlockDevice> {
        &self.inner
    }

    /// Adds a rule; its counter starts at the next I/O.
    pub fn add_rule(&self, rule: Rule) {
        let rng = match rule.trigger {
            Trigger::Random { seed, .. } => seed,
            _ => 0,
        };
        self.state
            .lock()
            .rules
            .push(RuleState { rule, seen: 0, rng });
    }

    /// Removes every rule: from now on everything is passed on.
    pub fn clear_rules(&self) {
        self.state.lock().rules.clear();
    }

    /// Switches injection off (everything is passed on, nothing counted
    /// by the rules) or back on.
    pub fn set_enabled(&self, on: bool) {
        self.state.lock().enabled = on;
    }

    /// Sets a function called with each fault as it is injected (before
    /// the I/O returns), e.g. to note where a log stood at that moment.
    pub fn set_hook(&self, hook: Option<InjectionHook>) {
        self.state.lock().hook = hook;
    }

    /// Every fault injected so far, in order.
    pub fn injected(&self) -> Vec<Injection> {
        self.state.lock().injected.clone()
    }

    pub fn nr_injected(&self) -> usize {
        self.state.lock().injected.len()
    }

    /// How many I/Os of each kind were issued to this device.
    pub fn counts(&self) -> IoCounts {
        let c = &self.state.lock().counters;
        IoCounts {
            ios: c.ios,
            reads: c.reads,
            writes: c.writes,
            flushes: c.flushes,
        }
    }

    /// Counts the I/O and returns the fault to apply, if any.
    fn decide(&self, kind: IoKind, first: u64, nr_blocks: usize) -> Option<(u64, Fault)> {
        let mut st = self.state.lock();
        let io = st.counters.ios;
        st.counters.ios += 1;
        match kind {
            IoKind::Read => st.counters.reads += 1,
            IoKind::Write => st.counters.writes += 1,
            IoKind::Flush => st.counters.flushes += 1,
        }
        if !st.enabled {
            return None;
        }
        let mut fault = None;
        for r in st.rules.iter_mut() {
            if !r.rule.kinds.contains(kind) {
                continue;
            }
            // Every rule of the I/O's kinds counts it, even after one fired.
            if r.fires(first, nr_blocks) && fault.is_none() {
                fault = Some(r.rule.fault);
            }
        }
        let fault = fault?;
        // Reads cannot be dropped, nor flushes corrupted.
        if matches!(
            (kind, fault),
            (IoKind::Read, Fault::Drop) | (IoKind::Flush, Fault::Corrupt { .. })
        ) {
            return None;
        }
        let inj = Injection {
            io,
            kind,
            block: first,
            nr_blocks,
            fault,
        };
        if let Some(hook) = st.hook.clone() {
            hook(&inj);
        }
        st.injected.push(inj);
        Some((io, fault))
    }
}

impl BlockDevice for FlakeyDevice {
    fn nr_blocks(&self) -> u64 {
        self.inner.nr_blocks()
    }

    fn read_blocks(&self, first: u64, bufs: &mut [&mut Block]) -> io::Result<()> {
        match self.decide(IoKind::Read, first, bufs.len()) {
            None => self.inner.read_blocks(first, bufs),
            Some((io, Fault::Fail)) => Err(injected_error(IoKind::Read, io)),
            Some((_, Fault::Corrupt { offset, value })) => {
                self.inner.read_blocks(first, bufs)?;
                let (i, o) = (offset / crate::BLOCK_SIZE, offset % crate::BLOCK_SIZE);
                if let Some(b) = bufs.get_mut(i) {
                    b[o] = value;
                }
                Ok(())
            }
            Some((_, Fault::Drop)) => self.inner.read_blocks(first, bufs),
        }
    }

    fn write_blocks(&self, first: u64, bufs: &[&Block]) -> io::Result<()> {
        match self.decide(IoKind::Write, first, bufs.len()) {
            None => self.inner.write_blocks(first, bufs),
            Some((io, Fault::Fail)) => Err(injected_error(IoKind::Write, io)),
            Some((_, Fault::Drop)) => Ok(()),
            Some((_, Fault::Corrupt { offset, value })) => {
                let (i, o) = (offset / crate::BLOCK_SIZE, offset % crate::BLOCK_SIZE);
                if i >= bufs.len() {
                    return self.inner.write_blocks(first, bufs);
                }
                let mut copy: Box<Block> = Box::new(*bufs[i]);
                copy[o] = value;
                let mut v: Vec<&Block> = bufs.to_vec();
                v[i] = &copy;
                self.inner.write_blocks(first, &v)
            }
        }
    }

    fn flush(&self) -> io::Result<()> {
        match self.decide(IoKind::Flush, 0, 0) {
            None => self.inner.flush(),
            Some((io, Fault::Fail)) => Err(injected_error(IoKind::Flush, io)),
            Some((_, Fault::Drop)) => Ok(()),
            Some((_, Fault::Corrupt { .. })) => self.inner.flush(),
        }
    }

    fn grow(&self, nr_blocks: u64) -> io::Result<()> {
        self.inner.grow(nr_blocks)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::MemoryDevice;
    use crate::BLOCK_SIZE;

    fn block(fill: u8) -> Box<Block> {
        Box::new([fill; BLOCK_SIZE])
    }

    fn setup(rule: Rule) -> (Arc<MemoryDevice>, FlakeyDevice) {
        let mem = Arc::new(MemoryDevice::new(16));
        let f = FlakeyDevice::with_rule(mem.clone(), rule);
        (mem, f)
    }

    fn read(dev: &dyn BlockDevice, loc: u64) -> io::Result<Box<Block>> {
        let mut b = block(0);
        dev.read_block(loc, &mut b)?;
        Ok(b)
    }

    #[test]
    fn nth_io_fails_once_and_never_reaches_the_device() {
        let (mem, f) = setup(Rule::fail(IoKinds::ALL, Trigger::Nth(1)));
        f.write_block(0, &block(1)).unwrap();
        assert!(f.write_block(1, &block(2)).is_err());
        f.write_block(2, &block(3)).unwrap();
        f.flush().unwrap();
        assert_eq!(
            read(&*mem, 1).unwrap()[0],
            0,
            "failed write reached the device"
        );
        assert_eq!(read(&*mem, 2).unwrap()[0], 3);
        let inj = f.injected();
        assert_eq!(inj.len(), 1);
        assert_eq!(inj[0].io, 1);
        assert_eq!(inj[0].kind, IoKind::Write);
        assert_eq!(inj[0].block, 1);
        assert_eq!(f.counts().ios, 4);
    }

    #[test]
    fn from_k_fails_everything_after() {
        let (_, f) = setup(Rule::fail(IoKinds::ALL, Trigger::From(2)));
        f.write_block(0, &block(1)).unwrap();
        read(&f, 0).unwrap();
        assert!(f.flush().is_err());
        assert!(read(&f, 0).is_err());
        assert!(f.write_block(0, &block(1)).is_err());
        assert_eq!(f.nr_injected(), 3);
        f.clear_rules();
        f.flush().unwrap();
    }

    #[test]
    fn rules_count_only_their_kinds() {
        let (_, f) = setup(Rule::fail(IoKinds::FLUSH, Trigger::Nth(1)));
        f.write_block(0, &block(1)).unwrap();
        f.flush().unwrap();
        read(&f, 0).unwrap();
        f.write_block(0, &block(1)).unwrap();
        let e = f.flush().unwrap_err();
        assert!(e.to_string().contains("injected flush error"), "{e}");
        f.flush().unwrap();
    }

    #[test]
    fn block_set_trigger() {
        let set: FxHashSet<u64> = [5u64].into_iter().collect();
        let (_, f) = setup(Rule::fail(
            IoKinds::READ | IoKinds::WRITE,
            Trigger::Blocks(set),
        ));
        f.write_blocks(2, &[&block(1), &block(1)]).unwrap();
        assert!(f.write_blocks(4, &[&block(1), &block(1)]).is_err());
        assert!(read(&f, 5).is_err());
        read(&f, 6).unwrap();
        f.flush().unwrap();
    }

    #[test]
    fn random_trigger_is_reproducible() {
        let pattern = |seed| {
            let (_, f) = setup(Rule::fail(
                IoKinds::ALL,
                Trigger::Random {
                    seed,
                    probability: 0.3,
                },
            ));
            (0..200).map(|_| f.flush().is_err()).collect::<Vec<bool>>()
        };
        let a = pattern(7);
        assert_eq!(a, pattern(7));
        assert_ne!(a, pattern(8));
        let failures = a.iter().filter(|&&x| x).count();
        assert!((30..90).contains(&failures), "{failures} of 200");
    }

    #[test]
    fn dropped_writes_report_success() {
        let (mem, f) = setup(Rule::drop_writes(Trigger::From(1)));
        f.write_block(0, &block(1)).unwrap();
        f.write_block(1, &block(2)).unwrap();
        f.flush().unwrap();
        assert_eq!(read(&*mem, 0).unwrap()[0], 1);
        assert_eq!(read(&*mem, 1).unwrap()[0], 0);
        // Reads are untouched by a drop rule.
        assert_eq!(read(&f, 0).unwrap()[0], 1);
        assert_eq!(f.nr_injected(), 1);
    }

    #[test]
    fn corrupt_written_byte() {
        let (mem, f) = setup(Rule::corrupt_writes(Trigger::Always, BLOCK_SIZE + 10, 0xee));
        let a = block(1);
        f.write_blocks(3, &[&a, &a]).unwrap();
        assert_eq!(read(&*mem, 3).unwrap()[10], 1);
        let b = read(&*mem, 4).unwrap();
        assert_eq!(b[10], 0xee);
        assert_eq!(b[11], 1);
        // The caller's buffer is not touched.
        assert_eq!(a[10], 1);
    }

    #[test]
    fn corrupt_read_byte() {
        let mem = Arc::new(MemoryDevice::new(4));
        mem.write_block(1, &block(9)).unwrap();
        let f = FlakeyDevice::with_rule(
            mem.clone(),
            Rule::new(
                IoKinds::READ,
                Trigger::Nth(0),
                Fault::Corrupt {
                    offset: 0,
                    value: 0,
                },
            ),
        );
        assert_eq!(read(&f, 1).unwrap()[0], 0);
        assert_eq!(read(&f, 1).unwrap()[0], 9);
        assert_eq!(read(&*mem, 1).unwrap()[0], 9);
    }

    #[test]
    fn hook_sees_each_injection() {
        let (_, f) = setup(Rule::fail(IoKinds::WRITE, Trigger::From(1)));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s2 = seen.clone();
        f.set_hook(Some(Arc::new(move |i: &Injection| s2.lock().push(i.io))));
        f.flush().unwrap();
        f.write_block(0, &block(1)).unwrap();
        let _ = f.write_block(0, &block(1));
        let _ = f.write_block(0, &block(1));
        assert_eq!(*seen.lock(), vec![2, 3]);
    }

    #[test]
    fn disabled_device_passes_everything() {
        let (_, f) = setup(Rule::fail(IoKinds::ALL, Trigger::Always));
        f.set_enabled(false);
        f.flush().unwrap();
        f.set_enabled(true);
        assert!(f.flush().is_err());
    }
}
