//! Figure 7: LightRAG answering in 50 ms; the delivery window must stay full.

use super::*;

impl Bench {
    /// Figure 7: LightRAG answering in 50 ms; the window must stay full.
    pub(super) async fn slow_sink(&mut self) -> anyhow::Result<()> {
        let n = self.opts.slow_sink_n();
        let latency = Duration::from_millis(50);
        let mem = memory_sim(n).await?;
        for batch_size in [10usize, 50] {
            let rag = LightragSim::start(LightragSimOptions { latency, ..Default::default() }).await?;
            let setup = Setup {
                memory_url: &mem.url(),
                lightrag_url: &rag.url(),
                backend: "sqlite",
                batch_size,
                query_limit: n,
                // Figure 7 counts requests in flight: one per document.
                batch_inserts: false,
            };
            let ws = setup.workspace();
            let run = self.sync(&ws).await?;
            let inserts = rag.request_count(SimRoute::Insert);
            let ideal = batch_size as f64 / latency.as_secs_f64();
            let rate = inserts as f64 / run.measured.wall_s;
            self.rows.push(
                Row::new(
                    format!("7.slow_sink.b{batch_size}.rate"),
                    format!("7. slow sink (50 ms) rate, batch_size {batch_size}"),
                    rate,
                    "/s",
                )
                .at_least(0.9 * ideal)
                .note(format!(
                    "{inserts} inserts in {} ms; ideal {} /s",
                    fmt_num(run.measured.wall_s * 1e3),
                    fmt_num(ideal)
                )),
            );
            self.rows.push(
                Row::new(
                    format!("7.slow_sink.b{batch_size}.in_flight"),
                    format!("7. slow sink max in flight, batch_size {batch_size}"),
                    rag.max_in_flight() as f64,
                    "req",
                )
                .equals(batch_size as f64),
            );
        }
        Ok(())
    }
}
