//! sluice's built-in spam filter: a pure library (no IO, no database, no
//! network, no async runtime). The caller parses nothing and looks nothing
//! up in advance except sender authentication (mail-auth, run by the
//! caller, handed in as [`AuthResults`]); the counts of the Bayes model are
//! loaded once by the caller (from a file or through [`TokenStore`]) and
//! kept in memory.
//!
//! # Score scale
//!
//! Scores are SpamAssassin-style points, so thresholds people already know
//! (and per-user thresholds set later) mean the same here: every signal
//! adds points, 5.0 is the default spam threshold, and the band from 3.0
//! up to it is "unsure" (the message is delivered but marked, and is the
//! first candidate for the user's corrections). The Bayes probability is
//! mapped to points linearly on each side of 0.5 ([`BayesPoints`]), so the
//! classifier alone can make a message spam when it is sure (p ≥ 0.955 by
//! default) and can outweigh a few structural rules on a message it knows
//! is ham; rules and authentication results add a few points each.

pub mod auth;
pub mod bayes;
mod freemail;
pub mod patterns;
pub mod rules;
pub mod tokens;

use mail_parser::MessageParser;
use serde::Serialize;

pub use auth::AuthResults;
pub use bayes::{Counts, Model, Params, Scope, TokenStore, View, learn_if_wrong};
pub use rules::Rules;

/// The three answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Class {
    Ham,
    Unsure,
    Spam,
}

/// One reason that contributed to a score.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Signal {
    /// Rule name in SpamAssassin's style (`BAYES_99`, `MISSING_DATE`).
    pub name: String,
    /// Points it added (negative: evidence of ham).
    pub score: f64,
    /// Which value made it fire, when that helps a reader.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

impl Signal {
    pub fn new(name: &str, score: f64, detail: String) -> Signal {
        Signal { name: name.to_string(), score, detail }
    }
}

/// The filter's answer for one message.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Verdict {
    pub score: f64,
    pub class: Class,
    pub is_spam: bool,
    pub signals: Vec<Signal>,
}

/// How Bayes probabilities become points: `spam` points at p = 1, falling
/// linearly to 0 at p = 0.5, and `ham` (negative) points at p = 0.
#[derive(Clone, Copy, Debug)]
pub struct BayesPoints {
    pub spam: f64,
    pub ham: f64,
}

impl Default for BayesPoints {
    fn default() -> Self {
        BayesPoints { spam: 5.5, ham: -3.0 }
    }
}

impl BayesPoints {
    /// Points for probability `p`.
    pub fn points(&self, p: f64) -> f64 {
        if p >= 0.5 { self.spam * (2.0 * p - 1.0) } else { self.ham * (1.0 - 2.0 * p) }
    }
}

/// Rules, model and thresholds.
#[derive(Clone, Debug)]
pub struct Filter {
    pub rules: Rules,
    pub model: Model,
    pub params: Params,
    pub bayes_points: BayesPoints,
    /// At or above this, spam (SpamAssassin's `required_score`).
    pub required: f64,
    /// At or above this (and below `required`), unsure.
    pub unsure: f64,
}

impl Filter {
    /// The shipped rules and default thresholds (5.0, unsure from 3.0).
    pub fn new(model: Model) -> Filter {
        Filter {
            rules: Rules::builtin(),
            model,
            params: Params::default(),
            bayes_points: BayesPoints::default(),
            required: 5.0,
            unsure: 3.0,
        }
    }

    /// Scores one message with the model's own counts (global, and the
    /// user's if the model carries them).
    pub fn score(&self, raw: &[u8], auth: &AuthResults) -> Verdict {
        self.score_with(raw, auth, self.model.view())
    }

    /// Scores one message for one user: the global counts plus `user`'s.
    pub fn score_for_user(&self, raw: &[u8], auth: &AuthResults, user: &Counts) -> Verdict {
        self.score_with(raw, auth, View { global: &self.model.global, user: Some(user) })
    }

    fn score_with(&self, raw: &[u8], auth: &AuthResults, view: View<'_>) -> Verdict {
        let mut signals = Vec::new();
        match MessageParser::default().parse(raw) {
            Some(msg) => {
                let toks = tokens::tokenize(&msg);
                signals.extend(self.bayes_signal(&toks, view));
                signals.extend(self.rules.evaluate(&msg, auth));
            }
            None => signals.push(Signal::new("UNPARSEABLE", 1.0, String::new())),
        }
        signals.extend(auth::signals(auth));
        self.verdict(signals)
    }

    /// The Bayes signal, in SpamAssassin's bucket names, or none when the
    /// model is under its training minimum.
    pub fn bayes_signal(&self, toks: &[u64], view: View<'_>) -> Option<Signal> {
        let b = view.classify(toks, &self.params)?;
        let name = bayes_name(b.prob);
        Some(Signal::new(
            name,
            self.bayes_points.points(b.prob),
            format!("p={:.4} clues={}", b.prob, b.clues),
        ))
    }

    /// Adds the signals up and classifies the sum.
    pub fn verdict(&self, signals: Vec<Signal>) -> Verdict {
        let score = signals.iter().map(|s| s.score).sum::<f64>();
        // Rounded to what is shown; adding 0.0 turns -0.0 (the sum of
        // nothing) into 0.0, so a header never says "score=-0.0".
        let score = (score * 1000.0).round() / 1000.0 + 0.0;
        let class = if score >= self.required {
            Class::Spam
        } else if score >= self.unsure {
            Class::Unsure
        } else {
            Class::Ham
        };
        Verdict { score, class, is_spam: class == Class::Spam, signals }
    }
}

impl Filter {
    /// Sets one tunable by name (`s`, `x`, `min_strength`, `max_tokens`,
    /// `min_ham`, `min_spam`, `min_total`, `user_weight`, `bayes_spam`,
    /// `bayes_ham`, `required`, `unsure`): for configuration and for tuning
    /// runs without a rebuild.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), String> {
        let v: f64 = value.parse().map_err(|_| format!("{key}: {value:?} is not a number"))?;
        let p = &mut self.params;
        match key {
            "s" => p.s = v,
            "x" => p.x = v,
            "min_strength" => p.min_strength = v,
            "max_tokens" => p.max_tokens = v as usize,
            "min_ham" => p.min_ham = v as u32,
            "min_spam" => p.min_spam = v as u32,
            "min_total" => p.min_total = v as u32,
            "user_weight" => p.user_weight = v,
            "bayes_spam" => self.bayes_points.spam = v,
            "bayes_ham" => self.bayes_points.ham = v,
            "required" => self.required = v,
            "unsure" => self.unsure = v,
            _ => return Err(format!("unknown setting {key:?}")),
        }
        Ok(())
    }

    /// The `n` most significant tokens of a message for the Bayes model,
    /// most significant first: (token text, f(w), ham count, spam count).
    pub fn explain(&self, raw: &[u8], n: usize) -> Vec<(String, f64, u32, u32)> {
        let Some(msg) = MessageParser::default().parse(raw) else { return Vec::new() };
        let view = self.model.view();
        let mut clues: Vec<(String, f64, u32, u32)> = tokens::tokenize_named(&msg)
            .into_iter()
            .filter_map(|(h, name)| {
                let f = view.token_prob(h, &self.params)?;
                let (ham, spam) = self.model.global.tokens.get(&h).copied().unwrap_or_default();
                Some((name, f, ham, spam))
            })
            .collect();
        clues.sort_by(|a, b| (b.1 - 0.5).abs().total_cmp(&(a.1 - 0.5).abs()));
        clues.truncate(n);
        clues
    }
}

/// SpamAssassin's Bayes bucket names (BAYES_00 … BAYES_999).
fn bayes_name(p: f64) -> &'static str {
    const BUCKETS: [(f64, &str); 9] = [
        (0.01, "BAYES_00"),
        (0.05, "BAYES_05"),
        (0.20, "BAYES_20"),
        (0.40, "BAYES_40"),
        (0.60, "BAYES_50"),
        (0.80, "BAYES_60"),
        (0.95, "BAYES_80"),
        (0.99, "BAYES_95"),
        (0.999, "BAYES_99"),
    ];
    BUCKETS.iter().find(|(upper, _)| p < *upper).map_or("BAYES_999", |(_, n)| n)
}

/// The `X-Spam-Status` header value in SpamAssassin's format, with the
/// class added: `Yes, score=7.2 required=5.0 class=spam tests=BAYES_99,MISSING_DATE`.
/// Tests are sorted by name, as SpamAssassin does, so the header is stable.
pub fn x_spam_status(v: &Verdict, required: f64) -> String {
    let mut names: Vec<&str> = v.signals.iter().map(|s| s.name.as_str()).collect();
    names.sort_unstable();
    let class = match v.class {
        Class::Ham => "ham",
        Class::Unsure => "unsure",
        Class::Spam => "spam",
    };
    let tests = if names.is_empty() { "none".to_string() } else { names.join(",") };
    format!(
        "{}, score={:.1} required={:.1} class={class} tests={tests}",
        if v.is_spam { "Yes" } else { "No" },
        v.score,
        required
    )
}
