//! Readers on real public files that PyPI wheels ship (fetched into `.assets/` by
//! `tests/fixtures/fetch_assets.sh`), against counts made by Python's csv module
//! (`tests/fixtures/make_real_data_reference.py`).

use normtune_core::data::{Format, NIH_LABELS, read_examples};
use normtune_tests::*;
use std::io::Read;

#[test]
fn reads_the_real_nih_label_table() {
    let path = fixture("../../.assets/torchxrayvision/Data_Entry_2017_v2020.csv.gz");
    let gz = std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; run tests/fixtures/fetch_assets.sh",
            path.display()
        )
    });
    let mut csv = Vec::new();
    flate2::read::GzDecoder::new(&gz[..])
        .read_to_end(&mut csv)
        .unwrap();
    let r: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fixture("real/nih_counts.json")).unwrap()).unwrap();
    let v = read_examples(&csv, "Data_Entry_2017_v2020.csv", Format::NihCsv, "train").unwrap();
    assert_eq!(v.len() as u64, r["rows"].as_u64().unwrap());
    let none = v.iter().filter(|e| !e.labels.iter().any(|l| *l)).count();
    assert_eq!(none as u64, r["no_finding"].as_u64().unwrap());
    for (i, name) in NIH_LABELS.iter().enumerate() {
        let n = v.iter().filter(|e| e.labels[i]).count();
        assert_eq!(n as u64, r["counts"][name].as_u64().unwrap(), "{name}");
    }
    assert_eq!(v[0].image, r["first"]["image"].as_str().unwrap());
}
