use std::time::Instant;

use anyhow::{Context, Result};

use crate::cli::NginxArgs;
use crate::error::Outcome;
use crate::manifest::Loaded;
use crate::nginx;
use crate::plan;
use crate::report::Report;

pub fn run(loaded: &Loaded, args: &NginxArgs, report: &Report) -> Result<Outcome> {
    let app = plan::app(loaded)?;
    let routes = plan::nginx_routes(&app, loaded, &args.builds)?;
    let text = nginx::snippet(&routes, std::path::Path::new(nginx::PROXY_PARAMS).exists());
    if args.check {
        nginx::check(&text)?;
    }
    let Some(output) = &args.output else {
        match report.mode {
            crate::report::Mode::Json => report.json(&serde_json::json!({ "routes": routes, "snippet": text })),
            _ => print!("{text}"),
        }
        return Ok(Outcome::Ok);
    };
    let t = Instant::now();
    let previous = nginx::install(output, &text)?;
    let live = (|| -> Result<()> {
        if args.check {
            nginx::test_host_config()?;
        }
        if args.reload {
            nginx::reload()?;
        }
        Ok(())
    })();
    if let Err(e) = live {
        previous.restore().with_context(|| format!("putting the previous {} back", output.display()))?;
        return Err(e.context(format!("{} restored to its previous contents", output.display())));
    }
    report.json(&serde_json::json!({ "output": output, "routes": routes, "reloaded": args.reload, "seconds": t.elapsed().as_secs_f64() }));
    Ok(Outcome::Ok)
}
