//! `normtune demo-data`: the built-in benchmark as a dataset folder on disk.

use crate::cli::DemoDataArgs;
use crate::fs::write_folder_atomic;
use normtune_core::demo::{Domain, generate, to_files};

pub fn run(a: DemoDataArgs) -> anyhow::Result<()> {
    let domain = Domain::named(&a.domain)?;
    anyhow::ensure!(a.studies > 0, "--studies must be at least 1");
    anyhow::ensure!(!a.out.exists(), "{}: already exists", a.out.display());
    let studies = generate(&domain, a.studies, a.seed);
    let files = to_files(&studies)?;
    write_folder_atomic(&a.out, &files)?;
    let questions: usize = studies.iter().map(|s| s.questions.len()).sum();
    eprintln!(
        "{}: {} studies of `{}` ({}x{} px), {questions} questions (vqa.jsonl), reports (reports.jsonl)",
        a.out.display(),
        studies.len(),
        domain.name,
        domain.size,
        domain.size
    );
    Ok(())
}
