use anyhow::Result;

use crate::cli::NginxArgs;
use crate::manifest::Loaded;
use crate::nginx;
use crate::nginx::control::Steps;
use crate::plan;
use crate::plan::routes;
use crate::report::{Mode, Report};

pub fn run(loaded: &Loaded, args: &NginxArgs, report: &Report) -> Result<()> {
    let app = plan::app(loaded)?;
    let routes = routes::snippet_routes(&app, loaded, &args.builds)?;
    let text = nginx::snippet::render(&routes, std::path::Path::new(nginx::snippet::PROXY_PARAMS).exists());
    if args.check {
        nginx::control::check(&text)?;
    }
    match &args.output {
        None => match report.mode {
            Mode::Json => report.json(&serde_json::json!({ "routes": routes, "snippet": text })),
            _ => crate::report::out(&text),
        },
        Some(output) => {
            let t = std::time::Instant::now();
            nginx::control::install(output, &text, Steps { check: args.check, reload: args.reload })?;
            let seconds = t.elapsed().as_secs_f64();
            report.json(
                &serde_json::json!({ "output": output, "routes": routes, "reloaded": args.reload, "seconds": seconds }),
            );
        }
    }
    Ok(())
}
