//! The Bayesian token classifier: Robinson's per-token probability f(w)
//! combined with Fisher's chi-square method, as SpamBayes does it.
//!
//! Why this combination: Graham's original "naive" product is overconfident
//! (almost every message lands at 0 or 1, so there is no "unsure"), while
//! Fisher's method answers two questions separately ("how unlikely is it
//! that these tokens are this hammy by chance?", the same for spammy) and
//! so gives a middle ground when a message looks like both or neither,
//! which is what the unsure band reports.
//!
//! Counts are kept in memory (a hash map from token hash to (ham, spam)
//! message counts, plus how many messages of each were trained): scoring a
//! message is one lookup per token. The database keeps them durable behind
//! [`TokenStore`]; this module never touches it.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::io::{Read, Write};

/// The keys are already well-mixed 64-bit hashes: hashing them again would
/// only cost time.
#[derive(Default, Clone, Copy)]
pub struct IdentityHasher(u64);

impl Hasher for IdentityHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

/// Token hash → (ham messages, spam messages) it appeared in.
pub type TokenMap = HashMap<u64, (u32, u32), BuildHasherDefault<IdentityHasher>>;

/// One scope's counts: the global model's or one user's.
#[derive(Default, Clone, Debug, PartialEq)]
pub struct Counts {
    pub tokens: TokenMap,
    /// Messages trained as ham.
    pub ham: u32,
    /// Messages trained as spam.
    pub spam: u32,
}

impl Counts {
    /// Trains (`delta` > 0) or untrains (`delta` < 0) one message's tokens;
    /// counts never go below zero, so untraining a message that was never
    /// trained cannot corrupt the model.
    pub fn add(&mut self, tokens: &[u64], is_spam: bool, delta: i32) {
        let step = |v: &mut u32| *v = v.saturating_add_signed(delta);
        step(if is_spam { &mut self.spam } else { &mut self.ham });
        for &t in tokens {
            let e = self.tokens.entry(t).or_insert((0, 0));
            step(if is_spam { &mut e.1 } else { &mut e.0 });
            if *e == (0, 0) {
                self.tokens.remove(&t);
            }
        }
    }

    /// Writes the counts in a compact binary form: a magic, the message
    /// totals, then (token, ham, spam) little-endian, sorted by token so the
    /// same model always gives the same bytes.
    pub fn write_to(&self, w: &mut impl Write) -> std::io::Result<()> {
        w.write_all(MAGIC)?;
        w.write_all(&self.ham.to_le_bytes())?;
        w.write_all(&self.spam.to_le_bytes())?;
        w.write_all(&(self.tokens.len() as u64).to_le_bytes())?;
        let mut entries: Vec<_> = self.tokens.iter().collect();
        entries.sort_unstable_by_key(|(k, _)| **k);
        let mut buf = Vec::with_capacity(entries.len() * 16);
        for (k, (h, s)) in entries {
            buf.extend_from_slice(&k.to_le_bytes());
            buf.extend_from_slice(&h.to_le_bytes());
            buf.extend_from_slice(&s.to_le_bytes());
        }
        w.write_all(&buf)
    }

    /// Reads what [`Counts::write_to`] wrote.
    pub fn read_from(r: &mut impl Read) -> std::io::Result<Counts> {
        let mut all = Vec::new();
        r.read_to_end(&mut all)?;
        let bad = |m: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, m.to_string());
        let rest = all.strip_prefix(MAGIC).ok_or_else(|| bad("not a sluice spam model"))?;
        if rest.len() < 16 {
            return Err(bad("truncated model header"));
        }
        let u32_at = |b: &[u8], i: usize| u32::from_le_bytes(b[i..i + 4].try_into().unwrap_or_default());
        let n = u64::from_le_bytes(rest[8..16].try_into().unwrap_or_default()) as usize;
        let body = &rest[16..];
        if body.len() != n.saturating_mul(16) {
            return Err(bad("model length does not match its token count"));
        }
        let mut tokens = TokenMap::with_capacity_and_hasher(n, Default::default());
        for e in body.chunks_exact(16) {
            let k = u64::from_le_bytes(e[..8].try_into().unwrap_or_default());
            tokens.insert(k, (u32_at(e, 8), u32_at(e, 12)));
        }
        Ok(Counts { tokens, ham: u32_at(rest, 0), spam: u32_at(rest, 4) })
    }
}

const MAGIC: &[u8; 8] = b"SLCBAYS1";

/// The classifier's constants. The defaults are SpamBayes' (tested on
/// large corpora) except the training minimum.
#[derive(Clone, Debug)]
pub struct Params {
    /// Robinson's s: how much weight the prior `x` has against a token's
    /// own evidence (0.45: a token seen once is still mostly unknown).
    pub s: f64,
    /// Robinson's x: the probability assumed for a token never seen.
    pub x: f64,
    /// Tokens with |f(w) − 0.5| below this are ignored: they only dilute.
    pub min_strength: f64,
    /// At most this many of the most significant tokens are combined.
    pub max_tokens: usize,
    /// Below these many trained messages the filter gives no opinion
    /// (rspamd and Stalwart also refuse to classify before a minimum: an
    /// untrained model's output is noise, and acting on it is harmful).
    pub min_ham: u32,
    pub min_spam: u32,
    pub min_total: u32,
    /// A user's own counts weigh this many times a global message: a user
    /// trains few messages (only on errors), and those are the ones that
    /// say how this user's mail differs from everyone's.
    pub user_weight: f64,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            s: 0.45,
            x: 0.5,
            min_strength: 0.1,
            max_tokens: 150,
            min_ham: 50,
            min_spam: 50,
            min_total: 200,
            user_weight: 5.0,
        }
    }
}

/// A global model and, when scoring for one user, that user's own counts.
/// The user's counts are added to the global ones, weighted by
/// [`Params::user_weight`], so a user's few corrections shift the verdict
/// on their own mail without a model of their own having to reach the
/// training minimum first.
#[derive(Default, Clone, Debug)]
pub struct Model {
    pub global: Counts,
    pub user: Option<Counts>,
}

impl Model {
    /// A model of global counts only.
    pub fn new(global: Counts) -> Model {
        Model { global, user: None }
    }

    /// This model, borrowed.
    pub fn view(&self) -> View<'_> {
        View { global: &self.global, user: self.user.as_ref() }
    }

    /// Whether enough messages are trained for the filter to have a say.
    pub fn is_ready(&self, p: &Params) -> bool {
        self.view().is_ready(p)
    }

    /// See [`View::classify`].
    pub fn classify(&self, tokens: &[u64], p: &Params) -> Option<Bayes> {
        self.view().classify(tokens, p)
    }
}

/// Global counts and optionally one user's, borrowed: the server keeps one
/// global model and many users' counts, and pairs them per message without
/// copying.
#[derive(Clone, Copy, Debug)]
pub struct View<'a> {
    pub global: &'a Counts,
    pub user: Option<&'a Counts>,
}

impl View<'_> {
    /// Weighted message totals (ham, spam).
    fn totals(&self, p: &Params) -> (f64, f64) {
        let (mut h, mut s) = (f64::from(self.global.ham), f64::from(self.global.spam));
        if let Some(u) = self.user {
            h += p.user_weight * f64::from(u.ham);
            s += p.user_weight * f64::from(u.spam);
        }
        (h, s)
    }

    /// Whether enough messages are trained for the filter to have a say.
    pub fn is_ready(&self, p: &Params) -> bool {
        let (h, s) = self.totals(p);
        h >= f64::from(p.min_ham) && s >= f64::from(p.min_spam) && h + s >= f64::from(p.min_total)
    }

    /// Weighted (ham, spam) counts of one token.
    fn token(&self, t: u64, p: &Params) -> (f64, f64) {
        let (gh, gs) = self.global.tokens.get(&t).copied().unwrap_or((0, 0));
        let (mut h, mut s) = (f64::from(gh), f64::from(gs));
        if let Some((uh, us)) = self.user.and_then(|u| u.tokens.get(&t)) {
            h += p.user_weight * f64::from(*uh);
            s += p.user_weight * f64::from(*us);
        }
        (h, s)
    }

    /// Robinson's f(w) for one token, or `None` for a token never seen:
    /// f(w) = (s·x + n·p(w)) / (s + n), where p(w) is the token's spam
    /// ratio normalised by the message totals and n the messages it was in.
    pub fn token_prob(&self, t: u64, p: &Params) -> Option<f64> {
        let (nham, nspam) = self.totals(p);
        let (h, s) = self.token(t, p);
        if h + s == 0.0 || nham == 0.0 || nspam == 0.0 {
            return None;
        }
        let (hr, sr) = ((h / nham).min(1.0), (s / nspam).min(1.0));
        let pw = sr / (hr + sr);
        let n = h + s;
        Some((p.s * p.x + n * pw) / (p.s + n))
    }

    /// The spam probability of a message's tokens in [0, 1] from the
    /// `max_tokens` most significant ones, or `None` when the model is not
    /// trained enough.
    pub fn classify(&self, tokens: &[u64], p: &Params) -> Option<Bayes> {
        if !self.is_ready(p) {
            return None;
        }
        let mut clues: Vec<(f64, f64)> = tokens
            .iter()
            .filter_map(|&t| self.token_prob(t, p))
            .map(|f| ((f - 0.5).abs(), f))
            .filter(|(strength, _)| *strength >= p.min_strength)
            .collect();
        if clues.len() > p.max_tokens {
            clues.select_nth_unstable_by(p.max_tokens, |a, b| b.0.total_cmp(&a.0));
            clues.truncate(p.max_tokens);
        }
        Some(Bayes { prob: fisher(clues.iter().map(|c| c.1)), clues: clues.len() })
    }
}

/// The classifier's answer for one message.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Bayes {
    /// Spam probability, 0 (ham) to 1 (spam); 0.5 when there is no evidence.
    pub prob: f64,
    /// How many tokens it was combined from.
    pub clues: usize,
}

/// Fisher's combining as SpamBayes does it: the spamminess S and hamminess
/// H are each one minus the chi-square probability of the product of the
/// token probabilities, and the result is (1 + S − H) / 2.
pub fn fisher(probs: impl Iterator<Item = f64>) -> f64 {
    let (mut ln_f, mut ln_1f, mut n) = (0.0f64, 0.0f64, 0usize);
    for f in probs {
        let f = f.clamp(1e-6, 1.0 - 1e-6);
        ln_f += f.ln();
        ln_1f += (1.0 - f).ln();
        n += 1;
    }
    if n == 0 {
        return 0.5;
    }
    let s = 1.0 - chi2q(-2.0 * ln_1f, 2 * n);
    let h = 1.0 - chi2q(-2.0 * ln_f, 2 * n);
    (1.0 + s - h) / 2.0
}

/// The chi-square survival function for an even number of degrees of
/// freedom (a closed series; no special functions needed).
pub fn chi2q(x2: f64, v: usize) -> f64 {
    let m = x2 / 2.0;
    let mut term = (-m).exp();
    let mut sum = term;
    for i in 1..v / 2 {
        term *= m / i as f64;
        sum += term;
    }
    sum.min(1.0)
}

/// Where a scope's counts live durably; the database implements it (the
/// table is not this crate's business). Scoring never calls it: counts are
/// loaded once and kept in memory, and training writes through it.
pub trait TokenStore {
    type Error;
    /// All counts of a scope.
    fn load(&self, scope: Scope<'_>) -> Result<Counts, Self::Error>;
    /// Adds `delta` (±1) to the message total and each token of one class.
    fn add(&mut self, scope: Scope<'_>, tokens: &[u64], is_spam: bool, delta: i32)
    -> Result<(), Self::Error>;
}

/// Whose counts: everyone's, or one user's own.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scope<'a> {
    Global,
    User(&'a str),
}

/// A [`TokenStore`] in memory (tests, and the file-backed CLI).
#[derive(Default, Debug)]
pub struct MemoryStore {
    pub scopes: HashMap<String, Counts>,
}

fn scope_key(scope: Scope<'_>) -> String {
    match scope {
        Scope::Global => String::new(),
        Scope::User(u) => format!("user:{u}"),
    }
}

impl TokenStore for MemoryStore {
    type Error = std::convert::Infallible;
    fn load(&self, scope: Scope<'_>) -> Result<Counts, Self::Error> {
        Ok(self.scopes.get(&scope_key(scope)).cloned().unwrap_or_default())
    }
    fn add(
        &mut self,
        scope: Scope<'_>,
        tokens: &[u64],
        is_spam: bool,
        delta: i32,
    ) -> Result<(), Self::Error> {
        self.scopes.entry(scope_key(scope)).or_default().add(tokens, is_spam, delta);
        Ok(())
    }
}

/// Train on errors: when a user says what a message is (moving it into or
/// out of Spam), train the user's own counts only if the filter's class
/// was not already right. Training every message would let the common,
/// already-learnt cases swamp the few that tell this user apart; training
/// on errors (and on unsure) is what SpamBayes and DSPAM recommend.
/// `was_trained_as` is the class this message was last trained as in this
/// scope, if any: that training is undone first, so moving a message back
/// and forth never counts it twice. Returns whether counts changed.
pub fn learn_if_wrong<S: TokenStore>(
    store: &mut S,
    scope: Scope<'_>,
    tokens: &[u64],
    is_spam: bool,
    verdict: crate::Class,
    was_trained_as: Option<bool>,
) -> Result<bool, S::Error> {
    if was_trained_as == Some(is_spam) {
        return Ok(false);
    }
    if let Some(previous) = was_trained_as {
        store.add(scope, tokens, previous, -1)?;
    }
    let right = matches!((verdict, is_spam), (crate::Class::Spam, true) | (crate::Class::Ham, false));
    if right && was_trained_as.is_none() {
        return Ok(false);
    }
    store.add(scope, tokens, is_spam, 1)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chi2q_known_values() {
        // Q(2, 2) = e^-1; Q(0, v) = 1.
        assert!((chi2q(2.0, 2) - (-1.0f64).exp()).abs() < 1e-12);
        assert_eq!(chi2q(0.0, 10), 1.0);
    }

    #[test]
    fn fisher_is_symmetric() {
        let a = fisher([0.99, 0.98, 0.9].into_iter());
        let b = fisher([0.01, 0.02, 0.1].into_iter());
        assert!(a > 0.9 && b < 0.1);
        assert!((a + b - 1.0).abs() < 1e-9);
        assert_eq!(fisher(std::iter::empty()), 0.5);
    }

    #[test]
    fn roundtrip() {
        let mut c = Counts::default();
        c.add(&[1, 2, 3], true, 1);
        c.add(&[3, 4], false, 1);
        let mut buf = Vec::new();
        c.write_to(&mut buf).unwrap();
        assert_eq!(buf.len(), 8 + 16 + 4 * 16);
        assert_eq!(Counts::read_from(&mut buf.as_slice()).unwrap(), c);
        c.add(&[3, 4], false, -1);
        c.add(&[3, 4], false, -1);
        assert_eq!(c.ham, 0);
        assert!(!c.tokens.contains_key(&4));
    }
}
