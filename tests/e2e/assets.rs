//! Asset bridging through real nginx: after a deploy, the static files only the release before it
//! had (a page it rendered links `app.1111.css`) are still served, the new release's files win
//! where names collide, the window ends with the next deploy, and a rollback serves the old
//! release's files first again. Needs root; fails (never skips) without it.

use std::path::Path;

use crate::common::env::Env;
use crate::common::scratch::variant;
use crate::common::show;

const SNIPPET: &str = "/etc/nginx/relctl-assets.conf";

#[test]
fn the_old_releases_hashed_assets_outlive_a_deploy_until_the_next() {
    let env = Env::boot();
    let m = variant("assets", |app| {
        std::fs::write(app.join("API/assets/medctrl/app.1111.css"), "/* release 1 */\n").unwrap();
        std::fs::write(app.join("API/assets/medctrl/hello.css"), "/* hello 1 */\n").unwrap();
    });
    let assets = m.parent().unwrap().join("API/assets/medctrl");
    let build = |what: &str| {
        let out = env.relctl_with(&m, &["build", "development"]);
        assert!(out.status.success(), "{what}: {}\n{}", show(&out), env.journal_tail());
    };
    build("release 1");
    let port = env.nginx_in_front(&m, SNIPPET);
    let get = |file: &str| -> (String, String) {
        let out = env.sh(&format!(
            "curl -sS -o /tmp/asset -w '%{{http_code}}' http://127.0.0.1:{port}/api/static/medctrl/{file}; echo; cat /tmp/asset"
        ));
        let (code, body) = out.split_once('\n').unwrap_or((&out, ""));
        (code.to_string(), body.trim().to_string())
    };
    assert_eq!(get("app.1111.css"), ("200".into(), "/* release 1 */".into()));

    // Release 2 renames its asset and changes hello.css: the page release 1 rendered still finds
    // app.1111.css; hello.css is release 2's.
    std::fs::remove_file(assets.join("app.1111.css")).unwrap();
    write(&assets.join("app.2222.css"), "/* release 2 */");
    write(&assets.join("hello.css"), "/* hello 2 */");
    build("release 2");
    assert_eq!(get("app.1111.css"), ("200".into(), "/* release 1 */".into()), "bridged from release 1");
    assert_eq!(get("app.2222.css"), ("200".into(), "/* release 2 */".into()));
    assert_eq!(get("hello.css"), ("200".into(), "/* hello 2 */".into()), "the new release wins");
    assert_eq!(get("nothing.css").0, "404");

    // Release 3: release 1's files are two deploys old, gone; release 2's are bridged.
    write(&assets.join("hello.css"), "/* hello 3 */");
    build("release 3");
    assert_eq!(get("app.1111.css").0, "404", "the window ends with the next deploy");
    assert_eq!(get("hello.css").1, "/* hello 3 */");

    // A rollback serves release 2's files first again.
    let out = env.relctl_with(&m, &["rollback", "development"]);
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(get("hello.css"), ("200".into(), "/* hello 2 */".into()));
    assert_eq!(get("app.2222.css").0, "200");
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, format!("{text}\n")).unwrap();
}
