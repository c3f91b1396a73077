//! The app's unit files, rendered from relctl's templates in `units/` (compiled into the binary):
//! `<app>@.service`, `<app>@.socket`, `<app>.target`. Rendered only where they are written.

use std::path::{Path, PathBuf};

use anyhow::Result;
use serde::Serialize;

use crate::plan::AppPlan;
use crate::render;

/// A file relctl writes for systemd.
#[derive(Debug, Clone, Serialize)]
pub struct UnitFile {
    pub path: PathBuf,
    pub contents: String,
}

const SERVICE_TEMPLATE: &str = include_str!("../units/app@.service.tera");
const SOCKET_TEMPLATE: &str = include_str!("../units/app@.socket.tera");
const TARGET_TEMPLATE: &str = include_str!("../units/app.target.tera");

/// What the unit templates see.
#[derive(Debug, Serialize)]
struct UnitContext<'a> {
    app: &'a str,
    component: &'a str,
    root: &'a Path,
    user: &'a str,
    socket_name: &'a str,
    socket_group: &'a str,
    timeout_start_s: u64,
}

/// The paths of the app's unit files, in the order they are written.
pub fn paths(app: &AppPlan) -> [PathBuf; 3] {
    let l = &app.layout;
    [l.service_template(), l.socket_template(), l.target()].map(|name| l.unit_dir.join(name))
}

/// Renders the app's three unit files.
pub fn render(app: &AppPlan) -> Result<Vec<UnitFile>> {
    let l = &app.layout;
    let ctx = UnitContext {
        app: &l.app,
        component: &l.component,
        root: &l.root,
        user: &app.user,
        socket_name: &l.socket_name,
        socket_group: &app.socket_group,
        // systemd must not give up on a start before the health gate does.
        timeout_start_s: app.health.as_ref().map_or(90, |h| h.timeout_s.max(90)),
    };
    let templates = [
        ("units/app@.service.tera", SERVICE_TEMPLATE),
        ("units/app@.socket.tera", SOCKET_TEMPLATE),
        ("units/app.target.tera", TARGET_TEMPLATE),
    ];
    paths(app)
        .into_iter()
        .zip(templates)
        .map(|(path, (name, source))| Ok(UnitFile { path, contents: render::render_value(name, source, &ctx)? }))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{self, Loaded};

    fn example() -> AppPlan {
        let text = "app = \"medctrl\"\ncomponent = \"backend\"\n[service]\nexec = \"x\"\n[builds.development]\n";
        let loaded =
            Loaded { path: "/srv/relctl.toml".into(), dir: "/srv".into(), manifest: manifest::parse(text).unwrap() };
        crate::plan::app(&loaded).unwrap()
    }

    fn service() -> String {
        render(&example()).unwrap().swap_remove(0).contents
    }

    #[test]
    fn units_use_the_instance_name_and_resolve_exec_against_current() {
        let units = render(&example()).unwrap();
        let service = &units[0];
        assert_eq!(service.path, Path::new("/etc/systemd/system/medctrl@.service"));
        let c = &service.contents;
        assert!(c.contains("ExecStart=/opt/medctrl/backend/%i/current/.relctl/start\n"), "{c}");
        assert!(c.contains("WorkingDirectory=/opt/medctrl/backend/%i/current\n"));
        assert!(c.contains("EnvironmentFile=/opt/medctrl/backend/%i/current/.relctl/environment\n"));
        assert!(c.contains("Requires=medctrl@%i.socket\n") && c.contains("PartOf=medctrl.target\n"));
        assert!(c.contains("StateDirectory=medctrl/backend/%i\n") && c.contains("User=medctrl\n"));
        // The service user's home is /nonexistent; the service gets a writable one of its own.
        assert!(c.contains("CacheDirectory=medctrl/backend/%i\nRuntimeDirectory=medctrl/backend/%i\n"), "{c}");
        assert!(c.contains("Environment=HOME=%C/medctrl/backend/%i XDG_RUNTIME_DIR=%t/medctrl/backend/%i\n"));
        assert!(c.contains("Type=notify\n") && c.contains("ProtectSystem=strict\n"));
        assert!(!c.contains("%I"), "use %i, never %I");
        let socket = &units[1].contents;
        assert!(socket.contains("ListenStream=/opt/medctrl/backend/%i/gunicorn.sock\n"));
        assert!(socket.contains("SocketGroup=www-data\n") && socket.contains("SocketMode=0660\n"));
        assert!(units[2].contents.contains("WantedBy=multi-user.target"));
    }

    const HARDENED: &[&str] = &[
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "PrivateDevices=yes",
        "PrivateMounts=yes",
        "PrivateUsers=yes",
        "ProtectProc=invisible",
        "ProcSubset=pid",
        "RemoveIPC=yes",
        "MemoryDenyWriteExecute=yes",
        "CapabilityBoundingSet=",
        "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6",
        "SystemCallFilter=@system-service",
        "SystemCallFilter=~@privileged @resources",
        "SystemCallErrorNumber=EPERM",
        "UMask=0077",
        "IPAddressDeny=any",
        "IPAddressAllow=localhost",
    ];

    #[test]
    fn service_is_hardened_by_default() {
        let c = service();
        let lines: Vec<&str> = c.lines().collect();
        for want in HARDENED {
            assert!(lines.contains(want), "missing {want:?}:\n{c}");
        }
        assert!(!c.contains("\n\n\n") && !c.contains("%I"), "{c}");
    }
}
