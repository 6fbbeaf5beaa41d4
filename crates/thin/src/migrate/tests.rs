use super::*;
use crate::ThinMetadata;
use pdata::io::MemoryDevice;
use pdata::live::LiveMetadata;
use std::sync::Arc;

/// A pool with devices 1 (blocks 2..5 -> 10..13, 7 -> 20) and 2 (a
/// snapshot of 1, then block 3 remapped, block 7 removed, block 9 added).
fn pool() -> ThinMetadata {
    let dev = Arc::new(MemoryDevice::new(256));
    let mut md = ThinMetadata::format(dev, 128, 100, false).unwrap();
    md.create_thin(1).unwrap();
    // Data blocks 0..32 allocated, so that any of them can be mapped.
    for _ in 0..32 {
        md.alloc().unwrap();
    }
    for (v, d) in [(2, 10), (3, 11), (4, 12), (5, 13), (7, 20)] {
        md.insert(1, v, d).unwrap();
    }
    md.create_snap(2, 1).unwrap();
    md.insert(2, 3, 30).unwrap();
    md.remove(2, 7).unwrap();
    md.insert(2, 9, 31).unwrap();
    md.commit().unwrap();
    md
}

fn extents(mut p: Plan<impl BlockRead>) -> Result<Vec<Extent>> {
    let mut out = Vec::new();
    while let Some(e) = p.next_extent()? {
        out.push(e);
    }
    Ok(out)
}

fn root(md: &ThinMetadata, dev: u64) -> Result<u64> {
    device_root(
        md.transaction_manager(),
        md.superblock().data_mapping_root,
        dev,
    )
}

#[test]
fn full_plan_covers_the_volume() {
    let md = pool();
    let tm = md.transaction_manager();
    let r1 = root(&md, 1).unwrap();
    assert_eq!(mapped_end(tm, r1).unwrap(), 8);
    let got = extents(Plan::full(tm, 1, r1, 10)).unwrap();
    use Extent::*;
    assert_eq!(
        got,
        vec![
            Zero { begin: 0, len: 2 },
            Copy {
                begin: 2,
                data: 10,
                len: 4
            },
            Zero { begin: 6, len: 1 },
            Copy {
                begin: 7,
                data: 20,
                len: 1
            },
            Zero { begin: 8, len: 2 },
        ]
    );
    // Too short a volume for its mappings.
    assert!(matches!(
        extents(Plan::full(tm, 1, r1, 7)),
        Err(MigrateError::PastEnd { block: 7, .. })
    ));
    assert!(matches!(root(&md, 3), Err(MigrateError::NoSuchDevice(3))));
}

#[test]
fn delta_plan_turns_the_base_into_the_device() {
    let md = pool();
    let tm = md.transaction_manager();
    let (r1, r2) = (root(&md, 1).unwrap(), root(&md, 2).unwrap());
    use Extent::*;
    assert_eq!(
        extents(Plan::delta(tm, 2, r2, r1, 10)).unwrap(),
        vec![
            Copy {
                begin: 3,
                data: 30,
                len: 1
            },
            Zero { begin: 7, len: 1 },
            Copy {
                begin: 9,
                data: 31,
                len: 1
            },
        ]
    );
    // The other way, and a volume that ends before the base's last block.
    assert_eq!(
        extents(Plan::delta(tm, 1, r1, r2, 8)).unwrap(),
        vec![
            Copy {
                begin: 3,
                data: 11,
                len: 1
            },
            Copy {
                begin: 7,
                data: 20,
                len: 1
            },
        ]
    );
    assert!(extents(Plan::delta(tm, 2, r2, r1, 9)).is_err());
    assert!(extents(Plan::delta(tm, 1, r1, r1, 8)).unwrap().is_empty());
}
