//! `lienthong serve`: start the hub and run until SIGTERM or Ctrl-C.

use anyhow::Context as _;

use crate::app::Hub;
use crate::config::Config;

pub async fn run(config: Config) -> anyhow::Result<()> {
    let _telemetry = crate::telemetry::init(&config.log)?;
    let hub = Hub::start(config)
        .await
        .context("the hub could not start")?;
    hub.run_until_signal().await?;
    Ok(())
}
