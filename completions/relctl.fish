# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_relctl_global_optspecs
    string join \n f/manifest= json q/quiet v/verbose H/host= hosts= serial= no-wait h/help V/version
end

function __fish_relctl_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_relctl_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_relctl_using_subcommand
    set -l cmd (__fish_relctl_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c relctl -n "__fish_relctl_needs_command" -s f -l manifest -d 'Use this manifest instead of searching upwards for relctl.toml' -r -F
complete -c relctl -n "__fish_relctl_needs_command" -s H -l host -d 'Run the command on HOST over SSH, like `systemctl -H`' -r
complete -c relctl -n "__fish_relctl_needs_command" -l hosts -d 'Roll the command over these hosts instead of the build\'s `hosts`' -r
complete -c relctl -n "__fish_relctl_needs_command" -l serial -d 'How many hosts of a roll run at a time' -r
complete -c relctl -n "__fish_relctl_needs_command" -l json -d 'Print one JSON document on stdout instead of text'
complete -c relctl -n "__fish_relctl_needs_command" -s q -l quiet -d 'Print nothing but errors'
complete -c relctl -n "__fish_relctl_needs_command" -s v -l verbose -d 'Print more: the full output of every hook'
complete -c relctl -n "__fish_relctl_needs_command" -l no-wait -d 'Fail at once if another relctl is changing the same app'
complete -c relctl -n "__fish_relctl_needs_command" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c relctl -n "__fish_relctl_needs_command" -s V -l version -d 'Print version'
complete -c relctl -n "__fish_relctl_needs_command" -f -a "init" -d 'Write a commented starter relctl.toml for a project'
complete -c relctl -n "__fish_relctl_needs_command" -f -a "build" -d 'Build a new release of BUILD and make it live'
complete -c relctl -n "__fish_relctl_needs_command" -f -a "diff" -d 'Show, as a unified diff, what the next build of BUILD would change on this host'
complete -c relctl -n "__fish_relctl_needs_command" -f -a "start" -d 'Start BUILD and wait until systemd\'s job is done'
complete -c relctl -n "__fish_relctl_needs_command" -f -a "stop" -d 'Stop BUILD and wait until systemd\'s jobs are done'
complete -c relctl -n "__fish_relctl_needs_command" -f -a "restart" -d 'Restart BUILD without users noticing; without BUILD, restart `<app>.target`'
complete -c relctl -n "__fish_relctl_needs_command" -f -a "releases" -d 'List BUILD\'s releases: id, created, git revision, state, origin'
complete -c relctl -n "__fish_relctl_needs_command" -f -a "rollback" -d 'Switch BUILD back to an earlier release, verified like `build`'
complete -c relctl -n "__fish_relctl_needs_command" -f -a "promote" -d 'Ship exactly what FROM runs to TO, verified and handed over like `build`'
complete -c relctl -n "__fish_relctl_needs_command" -f -a "reload" -d 'Reload BUILD gracefully: new gunicorn workers, same main process'
complete -c relctl -n "__fish_relctl_needs_command" -f -a "destroy" -d 'Tear BUILD down while the other builds keep serving'
complete -c relctl -n "__fish_relctl_needs_command" -f -a "status" -d 'Show each build\'s state, release, main PID, route and serving instance'
complete -c relctl -n "__fish_relctl_needs_command" -f -a "history" -d 'Show who changed what: every build, promote, rollback, restart, start, stop, reload, destroy, maintenance, site and renew'
complete -c relctl -n "__fish_relctl_needs_command" -f -a "maintenance" -d 'Take BUILD\'s route offline with a 503 page (on), or bring it back (off)'
complete -c relctl -n "__fish_relctl_needs_command" -f -a "logs" -d 'Show BUILD\'s journal: both instances\' services and sockets, oldest first'
complete -c relctl -n "__fish_relctl_needs_command" -f -a "nginx-snippet" -d 'Print nginx location blocks that route each build\'s URL prefix to its socket'
complete -c relctl -n "__fish_relctl_needs_command" -f -a "site" -d 'Serve the builds that have a `domain` over HTTPS: server blocks, certificates, renewal'
complete -c relctl -n "__fish_relctl_needs_command" -f -a "renew" -d 'Renew the certificates of the app\'s domains that are due; what relctl site\'s timer runs'
complete -c relctl -n "__fish_relctl_needs_command" -f -a "exec" -d 'Run CMD as BUILD\'s service runs: its user, environment, secrets, sandbox'
complete -c relctl -n "__fish_relctl_needs_command" -f -a "completions" -d 'Print a shell completion script for relctl on stdout'
complete -c relctl -n "__fish_relctl_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c relctl -n "__fish_relctl_using_subcommand init" -l app -d 'The app\'s name, for its system user, units and /opt/<APP>/' -r
complete -c relctl -n "__fish_relctl_using_subcommand init" -s f -l manifest -d 'Use this manifest instead of searching upwards for relctl.toml' -r -F
complete -c relctl -n "__fish_relctl_using_subcommand init" -s H -l host -d 'Run the command on HOST over SSH, like `systemctl -H`' -r
complete -c relctl -n "__fish_relctl_using_subcommand init" -l hosts -d 'Roll the command over these hosts instead of the build\'s `hosts`' -r
complete -c relctl -n "__fish_relctl_using_subcommand init" -l serial -d 'How many hosts of a roll run at a time' -r
complete -c relctl -n "__fish_relctl_using_subcommand init" -l json -d 'Print one JSON document on stdout instead of text'
complete -c relctl -n "__fish_relctl_using_subcommand init" -s q -l quiet -d 'Print nothing but errors'
complete -c relctl -n "__fish_relctl_using_subcommand init" -s v -l verbose -d 'Print more: the full output of every hook'
complete -c relctl -n "__fish_relctl_using_subcommand init" -l no-wait -d 'Fail at once if another relctl is changing the same app'
complete -c relctl -n "__fish_relctl_using_subcommand init" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c relctl -n "__fish_relctl_using_subcommand init" -s V -l version -d 'Print version'
complete -c relctl -n "__fish_relctl_using_subcommand build" -s f -l manifest -d 'Use this manifest instead of searching upwards for relctl.toml' -r -F
complete -c relctl -n "__fish_relctl_using_subcommand build" -s H -l host -d 'Run the command on HOST over SSH, like `systemctl -H`' -r
complete -c relctl -n "__fish_relctl_using_subcommand build" -l hosts -d 'Roll the command over these hosts instead of the build\'s `hosts`' -r
complete -c relctl -n "__fish_relctl_using_subcommand build" -l serial -d 'How many hosts of a roll run at a time' -r
complete -c relctl -n "__fish_relctl_using_subcommand build" -l dry-run -d 'Print the plan (paths, units, files, hooks, jobs); change nothing'
complete -c relctl -n "__fish_relctl_using_subcommand build" -l adopt -d 'Take over a build set up by hand (e.g. by the app\'s own deployment guide)'
complete -c relctl -n "__fish_relctl_using_subcommand build" -l json -d 'Print one JSON document on stdout instead of text'
complete -c relctl -n "__fish_relctl_using_subcommand build" -s q -l quiet -d 'Print nothing but errors'
complete -c relctl -n "__fish_relctl_using_subcommand build" -s v -l verbose -d 'Print more: the full output of every hook'
complete -c relctl -n "__fish_relctl_using_subcommand build" -l no-wait -d 'Fail at once if another relctl is changing the same app'
complete -c relctl -n "__fish_relctl_using_subcommand build" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c relctl -n "__fish_relctl_using_subcommand build" -s V -l version -d 'Print version'
complete -c relctl -n "__fish_relctl_using_subcommand diff" -s f -l manifest -d 'Use this manifest instead of searching upwards for relctl.toml' -r -F
complete -c relctl -n "__fish_relctl_using_subcommand diff" -s H -l host -d 'Run the command on HOST over SSH, like `systemctl -H`' -r
complete -c relctl -n "__fish_relctl_using_subcommand diff" -l hosts -d 'Roll the command over these hosts instead of the build\'s `hosts`' -r
complete -c relctl -n "__fish_relctl_using_subcommand diff" -l serial -d 'How many hosts of a roll run at a time' -r
complete -c relctl -n "__fish_relctl_using_subcommand diff" -l json -d 'Print one JSON document on stdout instead of text'
complete -c relctl -n "__fish_relctl_using_subcommand diff" -s q -l quiet -d 'Print nothing but errors'
complete -c relctl -n "__fish_relctl_using_subcommand diff" -s v -l verbose -d 'Print more: the full output of every hook'
complete -c relctl -n "__fish_relctl_using_subcommand diff" -l no-wait -d 'Fail at once if another relctl is changing the same app'
complete -c relctl -n "__fish_relctl_using_subcommand diff" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c relctl -n "__fish_relctl_using_subcommand diff" -s V -l version -d 'Print version'
complete -c relctl -n "__fish_relctl_using_subcommand start" -s f -l manifest -d 'Use this manifest instead of searching upwards for relctl.toml' -r -F
complete -c relctl -n "__fish_relctl_using_subcommand start" -s H -l host -d 'Run the command on HOST over SSH, like `systemctl -H`' -r
complete -c relctl -n "__fish_relctl_using_subcommand start" -l hosts -d 'Roll the command over these hosts instead of the build\'s `hosts`' -r
complete -c relctl -n "__fish_relctl_using_subcommand start" -l serial -d 'How many hosts of a roll run at a time' -r
complete -c relctl -n "__fish_relctl_using_subcommand start" -l json -d 'Print one JSON document on stdout instead of text'
complete -c relctl -n "__fish_relctl_using_subcommand start" -s q -l quiet -d 'Print nothing but errors'
complete -c relctl -n "__fish_relctl_using_subcommand start" -s v -l verbose -d 'Print more: the full output of every hook'
complete -c relctl -n "__fish_relctl_using_subcommand start" -l no-wait -d 'Fail at once if another relctl is changing the same app'
complete -c relctl -n "__fish_relctl_using_subcommand start" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c relctl -n "__fish_relctl_using_subcommand start" -s V -l version -d 'Print version'
complete -c relctl -n "__fish_relctl_using_subcommand stop" -s f -l manifest -d 'Use this manifest instead of searching upwards for relctl.toml' -r -F
complete -c relctl -n "__fish_relctl_using_subcommand stop" -s H -l host -d 'Run the command on HOST over SSH, like `systemctl -H`' -r
complete -c relctl -n "__fish_relctl_using_subcommand stop" -l hosts -d 'Roll the command over these hosts instead of the build\'s `hosts`' -r
complete -c relctl -n "__fish_relctl_using_subcommand stop" -l serial -d 'How many hosts of a roll run at a time' -r
complete -c relctl -n "__fish_relctl_using_subcommand stop" -l json -d 'Print one JSON document on stdout instead of text'
complete -c relctl -n "__fish_relctl_using_subcommand stop" -s q -l quiet -d 'Print nothing but errors'
complete -c relctl -n "__fish_relctl_using_subcommand stop" -s v -l verbose -d 'Print more: the full output of every hook'
complete -c relctl -n "__fish_relctl_using_subcommand stop" -l no-wait -d 'Fail at once if another relctl is changing the same app'
complete -c relctl -n "__fish_relctl_using_subcommand stop" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c relctl -n "__fish_relctl_using_subcommand stop" -s V -l version -d 'Print version'
complete -c relctl -n "__fish_relctl_using_subcommand restart" -l process -d 'Restart only this process of BUILD (a `[processes.<NAME>]`), instance by instance' -r
complete -c relctl -n "__fish_relctl_using_subcommand restart" -s f -l manifest -d 'Use this manifest instead of searching upwards for relctl.toml' -r -F
complete -c relctl -n "__fish_relctl_using_subcommand restart" -s H -l host -d 'Run the command on HOST over SSH, like `systemctl -H`' -r
complete -c relctl -n "__fish_relctl_using_subcommand restart" -l hosts -d 'Roll the command over these hosts instead of the build\'s `hosts`' -r
complete -c relctl -n "__fish_relctl_using_subcommand restart" -l serial -d 'How many hosts of a roll run at a time' -r
complete -c relctl -n "__fish_relctl_using_subcommand restart" -l json -d 'Print one JSON document on stdout instead of text'
complete -c relctl -n "__fish_relctl_using_subcommand restart" -s q -l quiet -d 'Print nothing but errors'
complete -c relctl -n "__fish_relctl_using_subcommand restart" -s v -l verbose -d 'Print more: the full output of every hook'
complete -c relctl -n "__fish_relctl_using_subcommand restart" -l no-wait -d 'Fail at once if another relctl is changing the same app'
complete -c relctl -n "__fish_relctl_using_subcommand restart" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c relctl -n "__fish_relctl_using_subcommand restart" -s V -l version -d 'Print version'
complete -c relctl -n "__fish_relctl_using_subcommand releases" -s f -l manifest -d 'Use this manifest instead of searching upwards for relctl.toml' -r -F
complete -c relctl -n "__fish_relctl_using_subcommand releases" -s H -l host -d 'Run the command on HOST over SSH, like `systemctl -H`' -r
complete -c relctl -n "__fish_relctl_using_subcommand releases" -l hosts -d 'Roll the command over these hosts instead of the build\'s `hosts`' -r
complete -c relctl -n "__fish_relctl_using_subcommand releases" -l serial -d 'How many hosts of a roll run at a time' -r
complete -c relctl -n "__fish_relctl_using_subcommand releases" -l json -d 'Print one JSON document on stdout instead of text'
complete -c relctl -n "__fish_relctl_using_subcommand releases" -s q -l quiet -d 'Print nothing but errors'
complete -c relctl -n "__fish_relctl_using_subcommand releases" -s v -l verbose -d 'Print more: the full output of every hook'
complete -c relctl -n "__fish_relctl_using_subcommand releases" -l no-wait -d 'Fail at once if another relctl is changing the same app'
complete -c relctl -n "__fish_relctl_using_subcommand releases" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c relctl -n "__fish_relctl_using_subcommand releases" -s V -l version -d 'Print version'
complete -c relctl -n "__fish_relctl_using_subcommand rollback" -l to -d 'The release to return to, e.g. 20261123T130501Z-abc1234' -r
complete -c relctl -n "__fish_relctl_using_subcommand rollback" -s f -l manifest -d 'Use this manifest instead of searching upwards for relctl.toml' -r -F
complete -c relctl -n "__fish_relctl_using_subcommand rollback" -s H -l host -d 'Run the command on HOST over SSH, like `systemctl -H`' -r
complete -c relctl -n "__fish_relctl_using_subcommand rollback" -l hosts -d 'Roll the command over these hosts instead of the build\'s `hosts`' -r
complete -c relctl -n "__fish_relctl_using_subcommand rollback" -l serial -d 'How many hosts of a roll run at a time' -r
complete -c relctl -n "__fish_relctl_using_subcommand rollback" -l migrate -d 'Unapply the migrations the older code does not know first, with the current release\'s code (`[hooks] pre_migrate`, then `[schema] unapply` per app); an irreversible migration makes it fail, with the current release still serving'
complete -c relctl -n "__fish_relctl_using_subcommand rollback" -l schema-compatible -d 'Go ahead leaving those migrations applied: the older code works with them'
complete -c relctl -n "__fish_relctl_using_subcommand rollback" -l json -d 'Print one JSON document on stdout instead of text'
complete -c relctl -n "__fish_relctl_using_subcommand rollback" -s q -l quiet -d 'Print nothing but errors'
complete -c relctl -n "__fish_relctl_using_subcommand rollback" -s v -l verbose -d 'Print more: the full output of every hook'
complete -c relctl -n "__fish_relctl_using_subcommand rollback" -l no-wait -d 'Fail at once if another relctl is changing the same app'
complete -c relctl -n "__fish_relctl_using_subcommand rollback" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c relctl -n "__fish_relctl_using_subcommand rollback" -s V -l version -d 'Print version'
complete -c relctl -n "__fish_relctl_using_subcommand promote" -s f -l manifest -d 'Use this manifest instead of searching upwards for relctl.toml' -r -F
complete -c relctl -n "__fish_relctl_using_subcommand promote" -s H -l host -d 'Run the command on HOST over SSH, like `systemctl -H`' -r
complete -c relctl -n "__fish_relctl_using_subcommand promote" -l hosts -d 'Roll the command over these hosts instead of the build\'s `hosts`' -r
complete -c relctl -n "__fish_relctl_using_subcommand promote" -l serial -d 'How many hosts of a roll run at a time' -r
complete -c relctl -n "__fish_relctl_using_subcommand promote" -l dry-run -d 'Print the plan; change nothing'
complete -c relctl -n "__fish_relctl_using_subcommand promote" -l migrate -d 'Unapply the migrations the older code does not know first, with the current release\'s code (`[hooks] pre_migrate`, then `[schema] unapply` per app); an irreversible migration makes it fail, with the current release still serving'
complete -c relctl -n "__fish_relctl_using_subcommand promote" -l schema-compatible -d 'Go ahead leaving those migrations applied: the older code works with them'
complete -c relctl -n "__fish_relctl_using_subcommand promote" -l json -d 'Print one JSON document on stdout instead of text'
complete -c relctl -n "__fish_relctl_using_subcommand promote" -s q -l quiet -d 'Print nothing but errors'
complete -c relctl -n "__fish_relctl_using_subcommand promote" -s v -l verbose -d 'Print more: the full output of every hook'
complete -c relctl -n "__fish_relctl_using_subcommand promote" -l no-wait -d 'Fail at once if another relctl is changing the same app'
complete -c relctl -n "__fish_relctl_using_subcommand promote" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c relctl -n "__fish_relctl_using_subcommand promote" -s V -l version -d 'Print version'
complete -c relctl -n "__fish_relctl_using_subcommand reload" -s f -l manifest -d 'Use this manifest instead of searching upwards for relctl.toml' -r -F
complete -c relctl -n "__fish_relctl_using_subcommand reload" -s H -l host -d 'Run the command on HOST over SSH, like `systemctl -H`' -r
complete -c relctl -n "__fish_relctl_using_subcommand reload" -l hosts -d 'Roll the command over these hosts instead of the build\'s `hosts`' -r
complete -c relctl -n "__fish_relctl_using_subcommand reload" -l serial -d 'How many hosts of a roll run at a time' -r
complete -c relctl -n "__fish_relctl_using_subcommand reload" -l json -d 'Print one JSON document on stdout instead of text'
complete -c relctl -n "__fish_relctl_using_subcommand reload" -s q -l quiet -d 'Print nothing but errors'
complete -c relctl -n "__fish_relctl_using_subcommand reload" -s v -l verbose -d 'Print more: the full output of every hook'
complete -c relctl -n "__fish_relctl_using_subcommand reload" -l no-wait -d 'Fail at once if another relctl is changing the same app'
complete -c relctl -n "__fish_relctl_using_subcommand reload" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c relctl -n "__fish_relctl_using_subcommand reload" -s V -l version -d 'Print version'
complete -c relctl -n "__fish_relctl_using_subcommand destroy" -s o -l output -d 'First rewrite the nginx snippet FILE without BUILD\'s routes' -r -F
complete -c relctl -n "__fish_relctl_using_subcommand destroy" -s f -l manifest -d 'Use this manifest instead of searching upwards for relctl.toml' -r -F
complete -c relctl -n "__fish_relctl_using_subcommand destroy" -s H -l host -d 'Run the command on HOST over SSH, like `systemctl -H`' -r
complete -c relctl -n "__fish_relctl_using_subcommand destroy" -l hosts -d 'Roll the command over these hosts instead of the build\'s `hosts`' -r
complete -c relctl -n "__fish_relctl_using_subcommand destroy" -l serial -d 'How many hosts of a roll run at a time' -r
complete -c relctl -n "__fish_relctl_using_subcommand destroy" -l purge -d 'Also remove the build\'s state and cache (database, uploads)'
complete -c relctl -n "__fish_relctl_using_subcommand destroy" -l dry-run -d 'Print what would be stopped, disabled and removed; change nothing'
complete -c relctl -n "__fish_relctl_using_subcommand destroy" -l check -d 'Validate the new snippet with the host\'s `nginx -t` before writing it'
complete -c relctl -n "__fish_relctl_using_subcommand destroy" -l reload -d 'After writing --output, reload nginx and wait for the new configuration'
complete -c relctl -n "__fish_relctl_using_subcommand destroy" -l json -d 'Print one JSON document on stdout instead of text'
complete -c relctl -n "__fish_relctl_using_subcommand destroy" -s q -l quiet -d 'Print nothing but errors'
complete -c relctl -n "__fish_relctl_using_subcommand destroy" -s v -l verbose -d 'Print more: the full output of every hook'
complete -c relctl -n "__fish_relctl_using_subcommand destroy" -l no-wait -d 'Fail at once if another relctl is changing the same app'
complete -c relctl -n "__fish_relctl_using_subcommand destroy" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c relctl -n "__fish_relctl_using_subcommand destroy" -s V -l version -d 'Print version'
complete -c relctl -n "__fish_relctl_using_subcommand status" -s f -l manifest -d 'Use this manifest instead of searching upwards for relctl.toml' -r -F
complete -c relctl -n "__fish_relctl_using_subcommand status" -s H -l host -d 'Run the command on HOST over SSH, like `systemctl -H`' -r
complete -c relctl -n "__fish_relctl_using_subcommand status" -l hosts -d 'Roll the command over these hosts instead of the build\'s `hosts`' -r
complete -c relctl -n "__fish_relctl_using_subcommand status" -l serial -d 'How many hosts of a roll run at a time' -r
complete -c relctl -n "__fish_relctl_using_subcommand status" -l json -d 'Print one JSON document on stdout instead of text'
complete -c relctl -n "__fish_relctl_using_subcommand status" -s q -l quiet -d 'Print nothing but errors'
complete -c relctl -n "__fish_relctl_using_subcommand status" -s v -l verbose -d 'Print more: the full output of every hook'
complete -c relctl -n "__fish_relctl_using_subcommand status" -l no-wait -d 'Fail at once if another relctl is changing the same app'
complete -c relctl -n "__fish_relctl_using_subcommand status" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c relctl -n "__fish_relctl_using_subcommand status" -s V -l version -d 'Print version'
complete -c relctl -n "__fish_relctl_using_subcommand history" -s n -l lines -d 'Only the last N records' -r
complete -c relctl -n "__fish_relctl_using_subcommand history" -s f -l manifest -d 'Use this manifest instead of searching upwards for relctl.toml' -r -F
complete -c relctl -n "__fish_relctl_using_subcommand history" -s H -l host -d 'Run the command on HOST over SSH, like `systemctl -H`' -r
complete -c relctl -n "__fish_relctl_using_subcommand history" -l hosts -d 'Roll the command over these hosts instead of the build\'s `hosts`' -r
complete -c relctl -n "__fish_relctl_using_subcommand history" -l serial -d 'How many hosts of a roll run at a time' -r
complete -c relctl -n "__fish_relctl_using_subcommand history" -l json -d 'Print one JSON document on stdout instead of text'
complete -c relctl -n "__fish_relctl_using_subcommand history" -s q -l quiet -d 'Print nothing but errors'
complete -c relctl -n "__fish_relctl_using_subcommand history" -s v -l verbose -d 'Print more: the full output of every hook'
complete -c relctl -n "__fish_relctl_using_subcommand history" -l no-wait -d 'Fail at once if another relctl is changing the same app'
complete -c relctl -n "__fish_relctl_using_subcommand history" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c relctl -n "__fish_relctl_using_subcommand history" -s V -l version -d 'Print version'
complete -c relctl -n "__fish_relctl_using_subcommand maintenance" -s f -l manifest -d 'Use this manifest instead of searching upwards for relctl.toml' -r -F
complete -c relctl -n "__fish_relctl_using_subcommand maintenance" -s H -l host -d 'Run the command on HOST over SSH, like `systemctl -H`' -r
complete -c relctl -n "__fish_relctl_using_subcommand maintenance" -l hosts -d 'Roll the command over these hosts instead of the build\'s `hosts`' -r
complete -c relctl -n "__fish_relctl_using_subcommand maintenance" -l serial -d 'How many hosts of a roll run at a time' -r
complete -c relctl -n "__fish_relctl_using_subcommand maintenance" -l json -d 'Print one JSON document on stdout instead of text'
complete -c relctl -n "__fish_relctl_using_subcommand maintenance" -s q -l quiet -d 'Print nothing but errors'
complete -c relctl -n "__fish_relctl_using_subcommand maintenance" -s v -l verbose -d 'Print more: the full output of every hook'
complete -c relctl -n "__fish_relctl_using_subcommand maintenance" -l no-wait -d 'Fail at once if another relctl is changing the same app'
complete -c relctl -n "__fish_relctl_using_subcommand maintenance" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c relctl -n "__fish_relctl_using_subcommand maintenance" -s V -l version -d 'Print version'
complete -c relctl -n "__fish_relctl_using_subcommand logs" -s n -l lines -d 'Only the last N entries (default: all of them, or 10 with --follow)' -r
complete -c relctl -n "__fish_relctl_using_subcommand logs" -l since -d 'Only entries at or after TIME, in journalctl\'s syntax' -r
complete -c relctl -n "__fish_relctl_using_subcommand logs" -l process -d 'The entries of one of BUILD\'s processes (every instance) or timers (its runs and its failure notification) instead of web\'s, by its name in the manifest' -r
complete -c relctl -n "__fish_relctl_using_subcommand logs" -s f -l manifest -d 'Use this manifest instead of searching upwards for relctl.toml' -r -F
complete -c relctl -n "__fish_relctl_using_subcommand logs" -s H -l host -d 'Run the command on HOST over SSH, like `systemctl -H`' -r
complete -c relctl -n "__fish_relctl_using_subcommand logs" -l hosts -d 'Roll the command over these hosts instead of the build\'s `hosts`' -r
complete -c relctl -n "__fish_relctl_using_subcommand logs" -l serial -d 'How many hosts of a roll run at a time' -r
complete -c relctl -n "__fish_relctl_using_subcommand logs" -l certs -d 'The runs of the certificate renewal (`relctl-<app>-certs.service`, see relctl site) instead of a build\'s entries'
complete -c relctl -n "__fish_relctl_using_subcommand logs" -s F -l follow -d 'Keep printing entries as they are written, until interrupted'
complete -c relctl -n "__fish_relctl_using_subcommand logs" -l json -d 'Print one JSON document on stdout instead of text'
complete -c relctl -n "__fish_relctl_using_subcommand logs" -s q -l quiet -d 'Print nothing but errors'
complete -c relctl -n "__fish_relctl_using_subcommand logs" -s v -l verbose -d 'Print more: the full output of every hook'
complete -c relctl -n "__fish_relctl_using_subcommand logs" -l no-wait -d 'Fail at once if another relctl is changing the same app'
complete -c relctl -n "__fish_relctl_using_subcommand logs" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c relctl -n "__fish_relctl_using_subcommand logs" -s V -l version -d 'Print version'
complete -c relctl -n "__fish_relctl_using_subcommand nginx-snippet" -l build -d 'Only this build (repeatable)' -r
complete -c relctl -n "__fish_relctl_using_subcommand nginx-snippet" -s o -l output -d 'Write the snippet to FILE atomically (mode 0644) instead of printing it' -r -F
complete -c relctl -n "__fish_relctl_using_subcommand nginx-snippet" -s f -l manifest -d 'Use this manifest instead of searching upwards for relctl.toml' -r -F
complete -c relctl -n "__fish_relctl_using_subcommand nginx-snippet" -s H -l host -d 'Run the command on HOST over SSH, like `systemctl -H`' -r
complete -c relctl -n "__fish_relctl_using_subcommand nginx-snippet" -l hosts -d 'Roll the command over these hosts instead of the build\'s `hosts`' -r
complete -c relctl -n "__fish_relctl_using_subcommand nginx-snippet" -l serial -d 'How many hosts of a roll run at a time' -r
complete -c relctl -n "__fish_relctl_using_subcommand nginx-snippet" -l check -d 'Validate the snippet with the host\'s `nginx -t` first'
complete -c relctl -n "__fish_relctl_using_subcommand nginx-snippet" -l reload -d 'After writing --output, reload nginx'
complete -c relctl -n "__fish_relctl_using_subcommand nginx-snippet" -l json -d 'Print one JSON document on stdout instead of text'
complete -c relctl -n "__fish_relctl_using_subcommand nginx-snippet" -s q -l quiet -d 'Print nothing but errors'
complete -c relctl -n "__fish_relctl_using_subcommand nginx-snippet" -s v -l verbose -d 'Print more: the full output of every hook'
complete -c relctl -n "__fish_relctl_using_subcommand nginx-snippet" -l no-wait -d 'Fail at once if another relctl is changing the same app'
complete -c relctl -n "__fish_relctl_using_subcommand nginx-snippet" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c relctl -n "__fish_relctl_using_subcommand nginx-snippet" -s V -l version -d 'Print version'
complete -c relctl -n "__fish_relctl_using_subcommand site" -s f -l manifest -d 'Use this manifest instead of searching upwards for relctl.toml' -r -F
complete -c relctl -n "__fish_relctl_using_subcommand site" -s H -l host -d 'Run the command on HOST over SSH, like `systemctl -H`' -r
complete -c relctl -n "__fish_relctl_using_subcommand site" -l hosts -d 'Roll the command over these hosts instead of the build\'s `hosts`' -r
complete -c relctl -n "__fish_relctl_using_subcommand site" -l serial -d 'How many hosts of a roll run at a time' -r
complete -c relctl -n "__fish_relctl_using_subcommand site" -l dry-run -d 'Print the server blocks and what would be done (certificates to obtain, the timer), and change nothing'
complete -c relctl -n "__fish_relctl_using_subcommand site" -l json -d 'Print one JSON document on stdout instead of text'
complete -c relctl -n "__fish_relctl_using_subcommand site" -s q -l quiet -d 'Print nothing but errors'
complete -c relctl -n "__fish_relctl_using_subcommand site" -s v -l verbose -d 'Print more: the full output of every hook'
complete -c relctl -n "__fish_relctl_using_subcommand site" -l no-wait -d 'Fail at once if another relctl is changing the same app'
complete -c relctl -n "__fish_relctl_using_subcommand site" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c relctl -n "__fish_relctl_using_subcommand site" -s V -l version -d 'Print version'
complete -c relctl -n "__fish_relctl_using_subcommand renew" -s f -l manifest -d 'Use this manifest instead of searching upwards for relctl.toml' -r -F
complete -c relctl -n "__fish_relctl_using_subcommand renew" -s H -l host -d 'Run the command on HOST over SSH, like `systemctl -H`' -r
complete -c relctl -n "__fish_relctl_using_subcommand renew" -l hosts -d 'Roll the command over these hosts instead of the build\'s `hosts`' -r
complete -c relctl -n "__fish_relctl_using_subcommand renew" -l serial -d 'How many hosts of a roll run at a time' -r
complete -c relctl -n "__fish_relctl_using_subcommand renew" -l json -d 'Print one JSON document on stdout instead of text'
complete -c relctl -n "__fish_relctl_using_subcommand renew" -s q -l quiet -d 'Print nothing but errors'
complete -c relctl -n "__fish_relctl_using_subcommand renew" -s v -l verbose -d 'Print more: the full output of every hook'
complete -c relctl -n "__fish_relctl_using_subcommand renew" -l no-wait -d 'Fail at once if another relctl is changing the same app'
complete -c relctl -n "__fish_relctl_using_subcommand renew" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c relctl -n "__fish_relctl_using_subcommand renew" -s V -l version -d 'Print version'
complete -c relctl -n "__fish_relctl_using_subcommand exec" -s e -l env -d 'Set KEY to VALUE for CMD, or to relctl\'s own KEY (repeatable)' -r
complete -c relctl -n "__fish_relctl_using_subcommand exec" -s f -l manifest -d 'Use this manifest instead of searching upwards for relctl.toml' -r -F
complete -c relctl -n "__fish_relctl_using_subcommand exec" -s H -l host -d 'Run the command on HOST over SSH, like `systemctl -H`' -r
complete -c relctl -n "__fish_relctl_using_subcommand exec" -l hosts -d 'Roll the command over these hosts instead of the build\'s `hosts`' -r
complete -c relctl -n "__fish_relctl_using_subcommand exec" -l serial -d 'How many hosts of a roll run at a time' -r
complete -c relctl -n "__fish_relctl_using_subcommand exec" -l json -d 'Print one JSON document on stdout instead of text'
complete -c relctl -n "__fish_relctl_using_subcommand exec" -s q -l quiet -d 'Print nothing but errors'
complete -c relctl -n "__fish_relctl_using_subcommand exec" -s v -l verbose -d 'Print more: the full output of every hook'
complete -c relctl -n "__fish_relctl_using_subcommand exec" -l no-wait -d 'Fail at once if another relctl is changing the same app'
complete -c relctl -n "__fish_relctl_using_subcommand exec" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c relctl -n "__fish_relctl_using_subcommand exec" -s V -l version -d 'Print version'
complete -c relctl -n "__fish_relctl_using_subcommand completions" -s f -l manifest -d 'Use this manifest instead of searching upwards for relctl.toml' -r -F
complete -c relctl -n "__fish_relctl_using_subcommand completions" -s H -l host -d 'Run the command on HOST over SSH, like `systemctl -H`' -r
complete -c relctl -n "__fish_relctl_using_subcommand completions" -l hosts -d 'Roll the command over these hosts instead of the build\'s `hosts`' -r
complete -c relctl -n "__fish_relctl_using_subcommand completions" -l serial -d 'How many hosts of a roll run at a time' -r
complete -c relctl -n "__fish_relctl_using_subcommand completions" -l json -d 'Print one JSON document on stdout instead of text'
complete -c relctl -n "__fish_relctl_using_subcommand completions" -s q -l quiet -d 'Print nothing but errors'
complete -c relctl -n "__fish_relctl_using_subcommand completions" -s v -l verbose -d 'Print more: the full output of every hook'
complete -c relctl -n "__fish_relctl_using_subcommand completions" -l no-wait -d 'Fail at once if another relctl is changing the same app'
complete -c relctl -n "__fish_relctl_using_subcommand completions" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c relctl -n "__fish_relctl_using_subcommand completions" -s V -l version -d 'Print version'
complete -c relctl -n "__fish_relctl_using_subcommand help; and not __fish_seen_subcommand_from init build diff start stop restart releases rollback promote reload destroy status history maintenance logs nginx-snippet site renew exec completions help" -f -a "init" -d 'Write a commented starter relctl.toml for a project'
complete -c relctl -n "__fish_relctl_using_subcommand help; and not __fish_seen_subcommand_from init build diff start stop restart releases rollback promote reload destroy status history maintenance logs nginx-snippet site renew exec completions help" -f -a "build" -d 'Build a new release of BUILD and make it live'
complete -c relctl -n "__fish_relctl_using_subcommand help; and not __fish_seen_subcommand_from init build diff start stop restart releases rollback promote reload destroy status history maintenance logs nginx-snippet site renew exec completions help" -f -a "diff" -d 'Show, as a unified diff, what the next build of BUILD would change on this host'
complete -c relctl -n "__fish_relctl_using_subcommand help; and not __fish_seen_subcommand_from init build diff start stop restart releases rollback promote reload destroy status history maintenance logs nginx-snippet site renew exec completions help" -f -a "start" -d 'Start BUILD and wait until systemd\'s job is done'
complete -c relctl -n "__fish_relctl_using_subcommand help; and not __fish_seen_subcommand_from init build diff start stop restart releases rollback promote reload destroy status history maintenance logs nginx-snippet site renew exec completions help" -f -a "stop" -d 'Stop BUILD and wait until systemd\'s jobs are done'
complete -c relctl -n "__fish_relctl_using_subcommand help; and not __fish_seen_subcommand_from init build diff start stop restart releases rollback promote reload destroy status history maintenance logs nginx-snippet site renew exec completions help" -f -a "restart" -d 'Restart BUILD without users noticing; without BUILD, restart `<app>.target`'
complete -c relctl -n "__fish_relctl_using_subcommand help; and not __fish_seen_subcommand_from init build diff start stop restart releases rollback promote reload destroy status history maintenance logs nginx-snippet site renew exec completions help" -f -a "releases" -d 'List BUILD\'s releases: id, created, git revision, state, origin'
complete -c relctl -n "__fish_relctl_using_subcommand help; and not __fish_seen_subcommand_from init build diff start stop restart releases rollback promote reload destroy status history maintenance logs nginx-snippet site renew exec completions help" -f -a "rollback" -d 'Switch BUILD back to an earlier release, verified like `build`'
complete -c relctl -n "__fish_relctl_using_subcommand help; and not __fish_seen_subcommand_from init build diff start stop restart releases rollback promote reload destroy status history maintenance logs nginx-snippet site renew exec completions help" -f -a "promote" -d 'Ship exactly what FROM runs to TO, verified and handed over like `build`'
complete -c relctl -n "__fish_relctl_using_subcommand help; and not __fish_seen_subcommand_from init build diff start stop restart releases rollback promote reload destroy status history maintenance logs nginx-snippet site renew exec completions help" -f -a "reload" -d 'Reload BUILD gracefully: new gunicorn workers, same main process'
complete -c relctl -n "__fish_relctl_using_subcommand help; and not __fish_seen_subcommand_from init build diff start stop restart releases rollback promote reload destroy status history maintenance logs nginx-snippet site renew exec completions help" -f -a "destroy" -d 'Tear BUILD down while the other builds keep serving'
complete -c relctl -n "__fish_relctl_using_subcommand help; and not __fish_seen_subcommand_from init build diff start stop restart releases rollback promote reload destroy status history maintenance logs nginx-snippet site renew exec completions help" -f -a "status" -d 'Show each build\'s state, release, main PID, route and serving instance'
complete -c relctl -n "__fish_relctl_using_subcommand help; and not __fish_seen_subcommand_from init build diff start stop restart releases rollback promote reload destroy status history maintenance logs nginx-snippet site renew exec completions help" -f -a "history" -d 'Show who changed what: every build, promote, rollback, restart, start, stop, reload, destroy, maintenance, site and renew'
complete -c relctl -n "__fish_relctl_using_subcommand help; and not __fish_seen_subcommand_from init build diff start stop restart releases rollback promote reload destroy status history maintenance logs nginx-snippet site renew exec completions help" -f -a "maintenance" -d 'Take BUILD\'s route offline with a 503 page (on), or bring it back (off)'
complete -c relctl -n "__fish_relctl_using_subcommand help; and not __fish_seen_subcommand_from init build diff start stop restart releases rollback promote reload destroy status history maintenance logs nginx-snippet site renew exec completions help" -f -a "logs" -d 'Show BUILD\'s journal: both instances\' services and sockets, oldest first'
complete -c relctl -n "__fish_relctl_using_subcommand help; and not __fish_seen_subcommand_from init build diff start stop restart releases rollback promote reload destroy status history maintenance logs nginx-snippet site renew exec completions help" -f -a "nginx-snippet" -d 'Print nginx location blocks that route each build\'s URL prefix to its socket'
complete -c relctl -n "__fish_relctl_using_subcommand help; and not __fish_seen_subcommand_from init build diff start stop restart releases rollback promote reload destroy status history maintenance logs nginx-snippet site renew exec completions help" -f -a "site" -d 'Serve the builds that have a `domain` over HTTPS: server blocks, certificates, renewal'
complete -c relctl -n "__fish_relctl_using_subcommand help; and not __fish_seen_subcommand_from init build diff start stop restart releases rollback promote reload destroy status history maintenance logs nginx-snippet site renew exec completions help" -f -a "renew" -d 'Renew the certificates of the app\'s domains that are due; what relctl site\'s timer runs'
complete -c relctl -n "__fish_relctl_using_subcommand help; and not __fish_seen_subcommand_from init build diff start stop restart releases rollback promote reload destroy status history maintenance logs nginx-snippet site renew exec completions help" -f -a "exec" -d 'Run CMD as BUILD\'s service runs: its user, environment, secrets, sandbox'
complete -c relctl -n "__fish_relctl_using_subcommand help; and not __fish_seen_subcommand_from init build diff start stop restart releases rollback promote reload destroy status history maintenance logs nginx-snippet site renew exec completions help" -f -a "completions" -d 'Print a shell completion script for relctl on stdout'
complete -c relctl -n "__fish_relctl_using_subcommand help; and not __fish_seen_subcommand_from init build diff start stop restart releases rollback promote reload destroy status history maintenance logs nginx-snippet site renew exec completions help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
