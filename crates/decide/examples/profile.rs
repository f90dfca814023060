//! Where classification time goes: MIME parsing alone vs the whole classifier,
//! over the fixtures. `cargo run --release -p decide --example profile`;
//! `PROFILE_ROUNDS=N` classifies every fixture N times and stops;
//! `PROFILE_FILE=path` times one message (e.g. a benchmark's filler mail).

use std::time::Instant;

fn main() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut msgs = Vec::new();
    let mut names = Vec::new();
    let mut stack = vec![root];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "eml") {
                msgs.push(std::fs::read(&p).unwrap_or_default());
                names.push(p.display().to_string());
            }
        }
    }
    decide::warm_up();
    if let Some(path) = std::env::var_os("PROFILE_FILE") {
        let msg = std::fs::read(&path).unwrap_or_default();
        let rounds = 20_000;
        let t = Instant::now();
        for _ in 0..rounds {
            std::hint::black_box(decide::classify(&msg));
        }
        let us = t.elapsed().as_secs_f64() * 1e6 / rounds as f64;
        let c = decide::classify(&msg);
        println!("{}: {us:.1} µs per message, verdict {}", path.to_string_lossy(), c.verdict.as_str());
        return;
    }
    // A fixed amount of work (for `perf stat -e instructions`, which a
    // shared, busy machine does not skew the way it skews wall time).
    if let Some(rounds) = std::env::var("PROFILE_ROUNDS").ok().and_then(|v| v.parse::<u32>().ok()) {
        for _ in 0..rounds {
            for m in &msgs {
                std::hint::black_box(decide::classify(m));
            }
        }
        println!("classified {} messages", rounds as usize * msgs.len());
        return;
    }
    // The costliest fixtures, each timed over many rounds.
    if std::env::var_os("PROFILE_EACH").is_some() {
        let mut each: Vec<(f64, &str, usize)> = msgs
            .iter()
            .zip(&names)
            .map(|(m, name)| {
                let start = Instant::now();
                for _ in 0..200 {
                    std::hint::black_box(decide::classify(m));
                }
                (start.elapsed().as_secs_f64() / 200.0 * 1e6, name.as_str(), m.len())
            })
            .collect();
        let total: f64 = each.iter().map(|e| e.0).sum();
        each.sort_by(|a, b| b.0.total_cmp(&a.0));
        for (us, name, len) in each.iter().take(15) {
            println!("{us:8.1} us {:5.1}% {len:7} B  {name}", us / total * 100.0);
        }
        println!("total {total:.0} us for {} fixtures", msgs.len());
        return;
    }
    for (name, f) in [
        (
            "parse only",
            (|m: &[u8]| drop(std::hint::black_box(mail_parser::MessageParser::default().parse(m))))
                as fn(&[u8]),
        ),
        ("classify", |m: &[u8]| drop(std::hint::black_box(decide::classify(m)))),
    ] {
        let start = Instant::now();
        let mut n = 0;
        while start.elapsed().as_secs_f64() < 2.0 {
            for m in &msgs {
                f(m);
                n += 1;
            }
        }
        println!("{name:12} {:8.0} msgs/s", n as f64 / start.elapsed().as_secs_f64());
    }
}
