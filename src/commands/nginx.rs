use std::time::Instant;

use anyhow::{Context, Result};

use crate::cli::NginxArgs;
use crate::error::Outcome;
use crate::manifest::Loaded;
use crate::nginx;
use crate::plan;
use crate::report::Report;
use crate::systemd::{JobKind, Systemd};

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
            reload_nginx()?;
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

/// Reloads nginx — over D-Bus when nginx.service is an active systemd unit, else with
/// `nginx -s reload` — and waits until its master has started new workers, i.e. until the new
/// configuration is live (a master that rejects it keeps its old workers).
fn reload_nginx() -> Result<()> {
    let systemd = Systemd::connect().ok();
    let unit = match &systemd {
        Some(s) => Some(s.unit_state("nginx.service")?).filter(|u| u.load_state == "loaded" && u.is_active()),
        None => None,
    };
    let master = match &unit {
        Some(u) => u.main_pid,
        None => std::fs::read_to_string("/run/nginx.pid").ok().and_then(|p| p.trim().parse().ok()).unwrap_or(0),
    };
    let old_workers = nginx::workers(master);
    match (&systemd, &unit) {
        (Some(s), Some(_)) => s.run_job(JobKind::Reload, "nginx.service")?,
        _ => {
            let out = std::process::Command::new("nginx").args(["-s", "reload"]).output().context("running nginx -s reload")?;
            if !out.status.success() {
                anyhow::bail!("nginx -s reload failed: {}", String::from_utf8_lossy(&out.stderr).trim());
            }
        }
    }
    if master != 0 {
        nginx::wait_for_new_workers(master, &old_workers, std::time::Duration::from_secs(10))?;
    }
    Ok(())
}
