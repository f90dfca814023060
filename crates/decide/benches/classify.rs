//! Messages classified per second on one core, over the project's fixtures
//! (so it runs without ../shared). Target: >= 20,000/s.

use std::path::Path;
use std::time::Instant;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};

fn fixtures() -> Vec<Vec<u8>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut out = Vec::new();
    let mut stack = vec![root];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "eml")
                && let Ok(b) = std::fs::read(&p)
            {
                out.push(b);
            }
        }
    }
    assert!(!out.is_empty(), "no fixtures found");
    out
}

fn bench(c: &mut Criterion) {
    let msgs = fixtures();
    decide::classify(&msgs[0]);
    // A plain figure first, easy to quote.
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed().as_secs_f64() < 2.0 {
        for m in &msgs {
            std::hint::black_box(decide::classify(m));
            n += 1;
        }
    }
    println!(
        "classify: {:.0} msgs/s on one core over {} fixtures",
        n as f64 / start.elapsed().as_secs_f64(),
        msgs.len()
    );
    let mut g = c.benchmark_group("classify");
    g.throughput(Throughput::Elements(msgs.len() as u64));
    g.bench_function("fixtures", |b| {
        b.iter(|| {
            for m in &msgs {
                std::hint::black_box(decide::classify(m));
            }
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
