//! What the queue knows of a route: a descriptor the composition gives it
//! (its transport, what its attempts count against, who is told of a
//! recipient that will not arrive). The scheduler reads descriptors and
//! never names a route: a new route is a new descriptor, not a new branch.

use std::collections::HashMap;
use std::sync::Arc;

use vocabulary::{Route, RouteKind};

use crate::scheduler::Transport;

/// What a route's attempts count against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Concurrency {
    /// The downstream: each attempt holds one of the scheduler's
    /// `max_parallel` slots while it runs. A failed connection parks the
    /// message; a delivery releases the parked ones (the downstream is
    /// back). Its reply's remote and DSN support are what a DSN reports.
    Downstream,
    /// The copies' lane: an attempt runs only with a place in it, and a
    /// message whose copies found none waits for one, not for a retry
    /// delay. Copies never hold a downstream slot.
    Lane,
    /// Neither: the transport paces itself (per destination).
    Unbounded,
}

/// Who is told of a recipient that will not arrive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DsnPolicy {
    /// The envelope sender, by a DSN the queue builds (RFC 3461); a
    /// refusal of a null sender's message, which nobody can be told
    /// about, is held as a dead letter.
    Sender,
    /// The route itself (its own record of each recipient): a refusal is
    /// final, and the queue builds no DSN.
    Transport,
    /// Nobody (a store copy): a refusal is held as a dead letter.
    Nobody,
}

/// One route as the queue runs it.
pub struct RouteSpec {
    pub transport: Arc<dyn Transport>,
    pub concurrency: Concurrency,
    pub dsn: DsnPolicy,
}

/// The routes that can be attempted. A route without a descriptor is not
/// attempted: its recipients wait in the spool (e.g. no `--relay`).
#[derive(Clone, Default)]
pub struct Routes(HashMap<RouteKind, Arc<RouteSpec>>);

impl Routes {
    /// Adds (or replaces) how `kind`'s recipients are delivered.
    pub fn with(mut self, kind: RouteKind, spec: RouteSpec) -> Self {
        self.0.insert(kind, Arc::new(spec));
        self
    }

    pub(crate) fn get(&self, route: &Route) -> Option<&Arc<RouteSpec>> {
        self.0.get(&route.kind())
    }
}
