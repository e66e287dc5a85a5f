//! Thin job handlers, one file per queue: decode → shared service → error (the queue runner in
//! [`crate::queue`] decides retry or dead letter from it). [`spawn_consumers`] starts one consumer
//! per queue; a new job type adds its handler file and one line there.

pub mod calendar_sync;
pub mod campaign_step;
pub mod csv_import;
pub mod embedding;
pub mod llm_reply;
pub mod noop;
pub mod notification;
pub mod voice_call;
pub mod voice_report;

use shared::Infra;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::queue::{DeadLetter, QueueOptions, run_queue};

/// Starts a consumer for every queue, each until `stop` flips.
pub fn spawn_consumers(
    infra: &Infra,
    worker: &str,
    dead_letter: DeadLetter,
    stop: watch::Receiver<bool>,
) -> Vec<JoinHandle<()>> {
    let opts = QueueOptions::from_settings(&infra.settings);
    let spawn = Spawner { infra, worker, dead_letter: &dead_letter, stop: &stop };
    vec![
        spawn.queue(noop::run, opts.clone()),
        // Imports are long and database-heavy: two at a time per process.
        spawn.queue(csv_import::run, QueueOptions { concurrency: 2, ..opts.clone() }),
        spawn.queue(embedding::run, opts.clone()),
        spawn.queue(calendar_sync::run, opts.clone()),
        spawn.queue(notification::run, opts.clone()),
        spawn.queue(voice_call::run, opts.clone()),
        spawn.queue(voice_report::run, opts.clone()),
        spawn.queue(campaign_step::run, opts.clone()),
        spawn.queue(llm_reply::run, opts.clone()),
        spawn.queue(llm_reply::run_send, opts.clone()),
    ]
}

struct Spawner<'a> {
    infra: &'a Infra,
    worker: &'a str,
    dead_letter: &'a DeadLetter,
    stop: &'a watch::Receiver<bool>,
}

impl Spawner<'_> {
    fn queue<J, F, Fut>(&self, handler: F, opts: QueueOptions) -> JoinHandle<()>
    where
        J: shared::jobs::Job,
        F: Fn(Infra, J, crate::queue::JobCtx) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = shared::Result<()>> + Send + 'static,
    {
        tokio::spawn(run_queue::<J, F, Fut>(
            self.infra.clone(),
            self.worker.to_string(),
            handler,
            opts,
            self.dead_letter.clone(),
            self.stop.clone(),
        ))
    }
}
