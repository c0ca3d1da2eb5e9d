# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_fluxctl_global_optspecs
    string join \n server= token= token-file= ca= insecure context= config= o/output= h/help V/version
end

function __fish_fluxctl_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_fluxctl_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_fluxctl_using_subcommand
    set -l cmd (__fish_fluxctl_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c fluxctl -n "__fish_fluxctl_needs_command" -l server -d 'Control-plane URL (overrides the context)' -r
complete -c fluxctl -n "__fish_fluxctl_needs_command" -l token -d 'Bearer token (overrides the context; prefer FLUX_TOKEN or --token-file)' -r
complete -c fluxctl -n "__fish_fluxctl_needs_command" -l token-file -d 'File holding the bearer token' -r -F
complete -c fluxctl -n "__fish_fluxctl_needs_command" -l ca -d 'CA certificate (PEM) to trust' -r -F
complete -c fluxctl -n "__fish_fluxctl_needs_command" -l context -d 'Context from the config file to use' -r
complete -c fluxctl -n "__fish_fluxctl_needs_command" -l config -d 'Config file (default ~/.config/fluxforge/config.toml)' -r -F
complete -c fluxctl -n "__fish_fluxctl_needs_command" -s o -l output -d 'Output format' -r -f -a "table\t''
wide\t'A table with more columns where a command has them (`agents list -o wide`)'
json\t''"
complete -c fluxctl -n "__fish_fluxctl_needs_command" -l insecure -d 'Accept any server certificate (like curl -k)'
complete -c fluxctl -n "__fish_fluxctl_needs_command" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c fluxctl -n "__fish_fluxctl_needs_command" -s V -l version -d 'Print version'
complete -c fluxctl -n "__fish_fluxctl_needs_command" -f -a "job" -d 'Run and inspect jobs'
complete -c fluxctl -n "__fish_fluxctl_needs_command" -f -a "rollout" -d 'Follow and steer rollouts (runs across a fleet at a controlled rate)'
complete -c fluxctl -n "__fish_fluxctl_needs_command" -f -a "schedule" -d 'Cron jobs that fire once per slot: create, list, get, pause, resume, trigger, delete'
complete -c fluxctl -n "__fish_fluxctl_needs_command" -f -a "agents" -d 'List and inspect agents'
complete -c fluxctl -n "__fish_fluxctl_needs_command" -f -a "token" -d 'Create and revoke tokens (admin)'
complete -c fluxctl -n "__fish_fluxctl_needs_command" -f -a "apply" -d 'Declare desired state from a state.toml: create and update its states (and with --prune delete the tenant\'s states it does not list)'
complete -c fluxctl -n "__fish_fluxctl_needs_command" -f -a "diff" -d 'Show what `apply` would change. Exit 0: nothing; 1: changes; 2: error'
complete -c fluxctl -n "__fish_fluxctl_needs_command" -f -a "state" -d 'Steer desired states: resume the remediation a state\'s rollout halted'
complete -c fluxctl -n "__fish_fluxctl_needs_command" -f -a "get" -d 'Show objects (desired states with their targets\' status)'
complete -c fluxctl -n "__fish_fluxctl_needs_command" -f -a "delete" -d 'Delete objects'
complete -c fluxctl -n "__fish_fluxctl_needs_command" -f -a "tenants" -d 'Tenants with their usage, and their quotas'
complete -c fluxctl -n "__fish_fluxctl_needs_command" -f -a "events" -d 'Print the tenant\'s events (jobs, agents, states, tokens); -f follows them live'
complete -c fluxctl -n "__fish_fluxctl_needs_command" -f -a "webhooks" -d 'Send events to other systems: signed HTTPS deliveries, at least once (admins)'
complete -c fluxctl -n "__fish_fluxctl_needs_command" -f -a "audit" -d 'Read and verify the audit log (admins)'
complete -c fluxctl -n "__fish_fluxctl_needs_command" -f -a "backup" -d 'Back up, verify and restore the whole store (admins of tenant default)'
complete -c fluxctl -n "__fish_fluxctl_needs_command" -f -a "status" -d 'Cluster status: this node, leader, epoch, agents by state'
complete -c fluxctl -n "__fish_fluxctl_needs_command" -f -a "whoami" -d 'Show the identity of the current token'
complete -c fluxctl -n "__fish_fluxctl_needs_command" -f -a "config" -d 'Manage contexts in the config file'
complete -c fluxctl -n "__fish_fluxctl_needs_command" -f -a "bench" -d 'Benchmarks against a running control plane'
complete -c fluxctl -n "__fish_fluxctl_needs_command" -f -a "chaos" -d 'Fault-injection runs on a local cluster, judged by an invariant checker'
complete -c fluxctl -n "__fish_fluxctl_needs_command" -f -a "completions" -d 'Print shell completions'
complete -c fluxctl -n "__fish_fluxctl_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand job; and not __fish_seen_subcommand_from run get list logs cancel wait attempts help" -l server -d 'Control-plane URL (overrides the context)' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand job; and not __fish_seen_subcommand_from run get list logs cancel wait attempts help" -l token -d 'Bearer token (overrides the context; prefer FLUX_TOKEN or --token-file)' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand job; and not __fish_seen_subcommand_from run get list logs cancel wait attempts help" -l token-file -d 'File holding the bearer token' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand job; and not __fish_seen_subcommand_from run get list logs cancel wait attempts help" -l ca -d 'CA certificate (PEM) to trust' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand job; and not __fish_seen_subcommand_from run get list logs cancel wait attempts help" -l context -d 'Context from the config file to use' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand job; and not __fish_seen_subcommand_from run get list logs cancel wait attempts help" -l config -d 'Config file (default ~/.config/fluxforge/config.toml)' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand job; and not __fish_seen_subcommand_from run get list logs cancel wait attempts help" -s o -l output -d 'Output format' -r -f -a "table\t''
wide\t'A table with more columns where a command has them (`agents list -o wide`)'
json\t''"
complete -c fluxctl -n "__fish_fluxctl_using_subcommand job; and not __fish_seen_subcommand_from run get list logs cancel wait attempts help" -l insecure -d 'Accept any server certificate (like curl -k)'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand job; and not __fish_seen_subcommand_from run get list logs cancel wait attempts help" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand job; and not __fish_seen_subcommand_from run get list logs cancel wait attempts help" -s V -l version -d 'Print version'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand job; and not __fish_seen_subcommand_from run get list logs cancel wait attempts help" -f -a "run" -d 'Submit a job. One argument is a shell command line; several are an argv'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand job; and not __fish_seen_subcommand_from run get list logs cancel wait attempts help" -f -a "get" -d 'Show one job'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand job; and not __fish_seen_subcommand_from run get list logs cancel wait attempts help" -f -a "list" -d 'List jobs, newest first: one page, or every page with --all'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand job; and not __fish_seen_subcommand_from run get list logs cancel wait attempts help" -f -a "logs" -d 'Print a job\'s output'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand job; and not __fish_seen_subcommand_from run get list logs cancel wait attempts help" -f -a "cancel" -d 'Cancel a job (running jobs are killed with their whole process group)'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand job; and not __fish_seen_subcommand_from run get list logs cancel wait attempts help" -f -a "wait" -d 'Wait for a job to end; exits like `job run --wait`'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand job; and not __fish_seen_subcommand_from run get list logs cancel wait attempts help" -f -a "attempts" -d 'Show a job\'s attempts'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand job; and not __fish_seen_subcommand_from run get list logs cancel wait attempts help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand job; and __fish_seen_subcommand_from run" -s n -l node -d 'Agent to run on (default: any online agent of the tenant)' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand job; and __fish_seen_subcommand_from run" -s l -l selector -d 'Run on an agent this selector matches: KEY=VALUE, or any expression such as \'role in (web,api),fact.cpus>=4\' (repeatable: all must hold)' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand job; and __fish_seen_subcommand_from run" -s e -l env -d 'Environment variable KEY=VALUE (repeatable)' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand job; and __fish_seen_subcommand_from run" -l secret-env -d 'Secret environment variable NAME, its value taken from fluxctl\'s own environment (so it is never on a command line); masked in the job\'s output and never shown, and a schedule keeps only its digest (repeatable)' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand job; and __fish_seen_subcommand_from run" -l workdir -d 'Working directory on the agent' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand job; and __fish_seen_subcommand_from run" -l timeout -d 'Kill the job after this long' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand job; and __fish_seen_subcommand_from run" -l attempts -d 'Attempts before giving up when agents are lost' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand job; and __fish_seen_subcommand_from run" -l priority -d 'Higher runs first among the tenant\'s queued jobs (-100 to 100)' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand job; and __fish_seen_subcommand_from run" -l idempotency-key -d 'Idempotency key: submitting twice with the same key runs the job once' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand job; and __fish_seen_subcommand_from run" -l wait-timeout -d 'With --wait: give up (exit 1) when the job has not ended after this long' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand job; and __fish_seen_subcommand_from run" -l max-concurrency -d 'With --all: run as a rollout, this many targets at once (a count or a percentage of the targets, rounded up, at least 1)' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand job; and __fish_seen_subcommand_from run" -l max-errors -d 'With --all: errors tolerated over the whole rollout (count or percentage); one more stops it. Default 0 in a rollout' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand job; and __fish_seen_subcommand_from run" -l canary -d 'With --all: that many targets run first, alone; any canary failure stops the rollout' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand job; and __fish_seen_subcommand_from run" -l verify -d 'With --all: a shell command run on each target after its job succeeded; its failure is an error' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand job; and __fish_seen_subcommand_from run" -l batch-wait -d 'With --all: run in batches of --max-concurrency, waiting this long between them' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand job; and __fish_seen_subcommand_from run" -l on-halt -d 'With --all: when the budget is spent, let running targets finish (wait) or cancel them' -r -f -a "wait\t''
cancel\t''"
complete -c fluxctl -n "__fish_fluxctl_using_subcommand job; and __fish_seen_subcommand_from run" -l server -d 'Control-plane URL (overrides the context)' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand job; and __fish_seen_subcommand_from run" -l token -d 'Bearer token (overrides the context; prefer FLUX_TOKEN or --token-file)' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand job; and __fish_seen_subcommand_from run" -l token-file -d 'File holding the bearer token' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand job; and __fish_seen_subcommand_from run" -l ca -d 'CA certificate (PEM) to trust' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand job; and __fish_seen_subcommand_from run" -l context -d 'Context from the config file to use' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand job; and __fish_seen_subcommand_from run" -l config -d 'Config file (default ~/.config/fluxforge/config.toml)' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand job; and __fish_seen_subcommand_from run" -s o -l output -d 'Output format' -r -f -a "table\t''
wide\t'A table with more columns where a command has them (`agents list -o wide`)'
json\t''"
complete -c fluxctl -n "__fish_fluxctl_using_subcommand job; and __fish_seen_subcommand_from run" -l all -d 'With --selector: run on every matching agent, one job each (a fan-out; a schedule resolves the selector at each slot)'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand job; and __fish_seen_subcommand_from run" -l allow-unknown-node -d 'With --node: accept the job even if no agent has enrolled or registered as that node yet (one about to enroll); without it such a job is refused'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand job; and __fish_seen_subcommand_from run" -l shell -d 'Join all arguments into one shell command line'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand job; and __fish_seen_subcommand_from run" -s w -l wait -d 'Wait for the job, stream its output and exit with its exit code. Gives up (exit 1) when the agent the job is pinned to is dead or revoked, or after --wait-timeout'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand job; and __fish_seen_subcommand_from run" -l offline-is-error -d 'With --all: count a target whose agent is offline at its turn as an error'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand job; and __fish_seen_subcommand_from run" -l insecure -d 'Accept any server certificate (like curl -k)'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand job; and __fish_seen_subcommand_from run" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand job; and __fish_seen_subcommand_from run" -s V -l version -d 'Print version'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand job; and __fish_seen_subcommand_from get" -l server -d 'Control-plane URL (overrides the context)' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand job; and __fish_seen_subcommand_from get" -l token -d 'Bearer token (overrides the context; prefer FLUX_TOKEN or --token-file)' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand job; and __fish_seen_subcommand_from get" -l token-file -d 'File holding the bearer token' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand job; and __fish_seen_subcommand_from get" -l ca -d 'CA certificate (PEM) to trust' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand job; and __fish_seen_subcommand_from get" -l context -d 'Context from the config file to use' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand job; and __fish_seen_subcommand_from get" -l config -d 'Config file (default ~/.config/fluxforge/config.toml)' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand job; and __fish_seen_subcommand_from get" -s o -l output -d 'Output format' -r -f -a "table\t''
wide\t'A table with more columns where a command has them (`agents list -o wide`)'
json\t''"
complete -c fluxctl -n "__fish_fluxctl_using_subcommand job; and __fish_seen_subcommand_from get" -l insecure -d 'Accept any server certificate (like curl -k)'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand job; and __fish_seen_subcommand_from get" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand job; and __fish_seen_subcommand_from get" -s V -l version -d 'Print version'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand job; and __fish_seen_subcommand_from list" -l status -d 'Only jobs in this status (queued, assigned, running, succeeded, failed, cancelled, timed_out)' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand job; and __fish_seen_subcommand_from list" -l node -d 'Only jobs pinned to or held by this agent' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand job; and __fish_seen_subcommand_from list" -l group -d 'Only the jobs of this fan-out group' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand job; and __fish_seen_subcommand_from list" -l kind -d 'Which jobs: made by users (default), by the reconciler, by rollouts, by schedules, or all' -r -f -a "user\t''
reconciler\t''
rollout\t''
schedule\t''
all\t''"
complete -c fluxctl -n "__fish_fluxctl_using_subcommand job; and __fish_seen_subcommand_from list" -l limit -d 'Jobs per page (1 to 1000; default 50, or 1000 with --all)' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand job; and __fish_seen_subcommand_from list" -l server -d 'Control-plane URL (overrides the context)' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand job; and __fish_seen_subcommand_from list" -l token -d 'Bearer token (overrides the context; prefer FLUX_TOKEN or --token-file)' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand job; and __fish_seen_subcommand_from list" -l token-file -d 'File holding the bearer token' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand job; and __fish_seen_subcommand_from list" -l ca -d 'CA certificate (PEM) to trust' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand job; and __fish_seen_subcommand_from list" -l context -d 'Context from the config file to use' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand job; and __fish_seen_subcommand_from list" -l config -d 'Config file (default ~/.config/fluxforge/config.toml)' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand job; and __fish_seen_subcommand_from list" -s o -l output -d 'Output format' -r -f -a "table\t''
wide\t'A table with more columns where a command has them (`agents list -o wide`)'
json\t''"
complete -c fluxctl -n "__fish_fluxctl_using_subcommand job; and __fish_seen_subcommand_from list" -l all -d 'Follow the pages to the last one'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand job; and __fish_seen_subcommand_from list" -s w -l watch -d 'Keep the listing current: print it again whenever a job event arrives (with -o json, print each job event as one JSON line instead)'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand job; and __fish_seen_subcommand_from list" -l insecure -d 'Accept any server certificate (like curl -k)'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand job; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand job; and __fish_seen_subcommand_from list" -s V -l version -d 'Print version'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand job; and __fish_seen_subcommand_from logs" -l server -d 'Control-plane URL (overrides the context)' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand job; and __fish_seen_subcommand_from logs" -l token -d 'Bearer token (overrides the context; prefer FLUX_TOKEN or --token-file)' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand job; and __fish_seen_subcommand_from logs" -l token-file -d 'File holding the bearer token' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand job; and __fish_seen_subcommand_from logs" -l ca -d 'CA certificate (PEM) to trust' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand job; and __fish_seen_subcommand_from logs" -l context -d 'Context from the config file to use' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand job; and __fish_seen_subcommand_from logs" -l config -d 'Config file (default ~/.config/fluxforge/config.toml)' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand job; and __fish_seen_subcommand_from logs" -s o -l output -d 'Output format' -r -f -a "table\t''
wide\t'A table with more columns where a command has them (`agents list -o wide`)'
json\t''"
complete -c fluxctl -n "__fish_fluxctl_using_subcommand job; and __fish_seen_subcommand_from logs" -s f -l follow -d 'Keep streaming until the job ends'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand job; and __fish_seen_subcommand_from logs" -l insecure -d 'Accept any server certificate (like curl -k)'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand job; and __fish_seen_subcommand_from logs" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand job; and __fish_seen_subcommand_from logs" -s V -l version -d 'Print version'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand job; and __fish_seen_subcommand_from cancel" -l server -d 'Control-plane URL (overrides the context)' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand job; and __fish_seen_subcommand_from cancel" -l token -d 'Bearer token (overrides the context; prefer FLUX_TOKEN or --token-file)' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand job; and __fish_seen_subcommand_from cancel" -l token-file -d 'File holding the bearer token' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand job; and __fish_seen_subcommand_from cancel" -l ca -d 'CA certificate (PEM) to trust' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand job; and __fish_seen_subcommand_from cancel" -l context -d 'Context from the config file to use' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand job; and __fish_seen_subcommand_from cancel" -l config -d 'Config file (default ~/.config/fluxforge/config.toml)' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand job; and __fish_seen_subcommand_from cancel" -s o -l output -d 'Output format' -r -f -a "table\t''
wide\t'A table with more columns where a command has them (`agents list -o wide`)'
json\t''"
complete -c fluxctl -n "__fish_fluxctl_using_subcommand job; and __fish_seen_subcommand_from cancel" -l insecure -d 'Accept any server certificate (like curl -k)'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand job; and __fish_seen_subcommand_from cancel" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand job; and __fish_seen_subcommand_from cancel" -s V -l version -d 'Print version'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand job; and __fish_seen_subcommand_from wait" -l timeout -d 'Give up after this long (exit 1)' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand job; and __fish_seen_subcommand_from wait" -l server -d 'Control-plane URL (overrides the context)' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand job; and __fish_seen_subcommand_from wait" -l token -d 'Bearer token (overrides the context; prefer FLUX_TOKEN or --token-file)' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand job; and __fish_seen_subcommand_from wait" -l token-file -d 'File holding the bearer token' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand job; and __fish_seen_subcommand_from wait" -l ca -d 'CA certificate (PEM) to trust' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand job; and __fish_seen_subcommand_from wait" -l context -d 'Context from the config file to use' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand job; and __fish_seen_subcommand_from wait" -l config -d 'Config file (default ~/.config/fluxforge/config.toml)' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand job; and __fish_seen_subcommand_from wait" -s o -l output -d 'Output format' -r -f -a "table\t''
wide\t'A table with more columns where a command has them (`agents list -o wide`)'
json\t''"
complete -c fluxctl -n "__fish_fluxctl_using_subcommand job; and __fish_seen_subcommand_from wait" -l insecure -d 'Accept any server certificate (like curl -k)'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand job; and __fish_seen_subcommand_from wait" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand job; and __fish_seen_subcommand_from wait" -s V -l version -d 'Print version'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand job; and __fish_seen_subcommand_from attempts" -l server -d 'Control-plane URL (overrides the context)' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand job; and __fish_seen_subcommand_from attempts" -l token -d 'Bearer token (overrides the context; prefer FLUX_TOKEN or --token-file)' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand job; and __fish_seen_subcommand_from attempts" -l token-file -d 'File holding the bearer token' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand job; and __fish_seen_subcommand_from attempts" -l ca -d 'CA certificate (PEM) to trust' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand job; and __fish_seen_subcommand_from attempts" -l context -d 'Context from the config file to use' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand job; and __fish_seen_subcommand_from attempts" -l config -d 'Config file (default ~/.config/fluxforge/config.toml)' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand job; and __fish_seen_subcommand_from attempts" -s o -l output -d 'Output format' -r -f -a "table\t''
wide\t'A table with more columns where a command has them (`agents list -o wide`)'
json\t''"
complete -c fluxctl -n "__fish_fluxctl_using_subcommand job; and __fish_seen_subcommand_from attempts" -l insecure -d 'Accept any server certificate (like curl -k)'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand job; and __fish_seen_subcommand_from attempts" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand job; and __fish_seen_subcommand_from attempts" -s V -l version -d 'Print version'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand job; and __fish_seen_subcommand_from help" -f -a "run" -d 'Submit a job. One argument is a shell command line; several are an argv'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand job; and __fish_seen_subcommand_from help" -f -a "get" -d 'Show one job'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand job; and __fish_seen_subcommand_from help" -f -a "list" -d 'List jobs, newest first: one page, or every page with --all'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand job; and __fish_seen_subcommand_from help" -f -a "logs" -d 'Print a job\'s output'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand job; and __fish_seen_subcommand_from help" -f -a "cancel" -d 'Cancel a job (running jobs are killed with their whole process group)'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand job; and __fish_seen_subcommand_from help" -f -a "wait" -d 'Wait for a job to end; exits like `job run --wait`'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand job; and __fish_seen_subcommand_from help" -f -a "attempts" -d 'Show a job\'s attempts'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand job; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand rollout; and not __fish_seen_subcommand_from list get wait pause resume cancel retry help" -l server -d 'Control-plane URL (overrides the context)' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand rollout; and not __fish_seen_subcommand_from list get wait pause resume cancel retry help" -l token -d 'Bearer token (overrides the context; prefer FLUX_TOKEN or --token-file)' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand rollout; and not __fish_seen_subcommand_from list get wait pause resume cancel retry help" -l token-file -d 'File holding the bearer token' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand rollout; and not __fish_seen_subcommand_from list get wait pause resume cancel retry help" -l ca -d 'CA certificate (PEM) to trust' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand rollout; and not __fish_seen_subcommand_from list get wait pause resume cancel retry help" -l context -d 'Context from the config file to use' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand rollout; and not __fish_seen_subcommand_from list get wait pause resume cancel retry help" -l config -d 'Config file (default ~/.config/fluxforge/config.toml)' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand rollout; and not __fish_seen_subcommand_from list get wait pause resume cancel retry help" -s o -l output -d 'Output format' -r -f -a "table\t''
wide\t'A table with more columns where a command has them (`agents list -o wide`)'
json\t''"
complete -c fluxctl -n "__fish_fluxctl_using_subcommand rollout; and not __fish_seen_subcommand_from list get wait pause resume cancel retry help" -l insecure -d 'Accept any server certificate (like curl -k)'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand rollout; and not __fish_seen_subcommand_from list get wait pause resume cancel retry help" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand rollout; and not __fish_seen_subcommand_from list get wait pause resume cancel retry help" -s V -l version -d 'Print version'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand rollout; and not __fish_seen_subcommand_from list get wait pause resume cancel retry help" -f -a "list" -d 'List rollouts, newest first'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand rollout; and not __fish_seen_subcommand_from list get wait pause resume cancel retry help" -f -a "get" -d 'Show a rollout and its targets'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand rollout; and not __fish_seen_subcommand_from list get wait pause resume cancel retry help" -f -a "wait" -d 'Follow a rollout until it finishes; exits 0, 1, 3 or 130 like `job run --wait`'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand rollout; and not __fish_seen_subcommand_from list get wait pause resume cancel retry help" -f -a "pause" -d 'Start no new target until resumed (running ones finish)'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand rollout; and not __fish_seen_subcommand_from list get wait pause resume cancel retry help" -f -a "resume" -d 'Resume a paused rollout'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand rollout; and not __fish_seen_subcommand_from list get wait pause resume cancel retry help" -f -a "cancel" -d 'Cancel a rollout: nothing new starts, running targets are cancelled'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand rollout; and not __fish_seen_subcommand_from list get wait pause resume cancel retry help" -f -a "retry" -d 'Run the failed, skipped and not started targets of a finished rollout again, as a new rollout that references it'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand rollout; and not __fish_seen_subcommand_from list get wait pause resume cancel retry help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand rollout; and __fish_seen_subcommand_from list" -l limit -d 'Rollouts per page (1 to 1000)' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand rollout; and __fish_seen_subcommand_from list" -l server -d 'Control-plane URL (overrides the context)' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand rollout; and __fish_seen_subcommand_from list" -l token -d 'Bearer token (overrides the context; prefer FLUX_TOKEN or --token-file)' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand rollout; and __fish_seen_subcommand_from list" -l token-file -d 'File holding the bearer token' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand rollout; and __fish_seen_subcommand_from list" -l ca -d 'CA certificate (PEM) to trust' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand rollout; and __fish_seen_subcommand_from list" -l context -d 'Context from the config file to use' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand rollout; and __fish_seen_subcommand_from list" -l config -d 'Config file (default ~/.config/fluxforge/config.toml)' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand rollout; and __fish_seen_subcommand_from list" -s o -l output -d 'Output format' -r -f -a "table\t''
wide\t'A table with more columns where a command has them (`agents list -o wide`)'
json\t''"
complete -c fluxctl -n "__fish_fluxctl_using_subcommand rollout; and __fish_seen_subcommand_from list" -l insecure -d 'Accept any server certificate (like curl -k)'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand rollout; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand rollout; and __fish_seen_subcommand_from list" -s V -l version -d 'Print version'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand rollout; and __fish_seen_subcommand_from get" -l server -d 'Control-plane URL (overrides the context)' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand rollout; and __fish_seen_subcommand_from get" -l token -d 'Bearer token (overrides the context; prefer FLUX_TOKEN or --token-file)' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand rollout; and __fish_seen_subcommand_from get" -l token-file -d 'File holding the bearer token' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand rollout; and __fish_seen_subcommand_from get" -l ca -d 'CA certificate (PEM) to trust' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand rollout; and __fish_seen_subcommand_from get" -l context -d 'Context from the config file to use' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand rollout; and __fish_seen_subcommand_from get" -l config -d 'Config file (default ~/.config/fluxforge/config.toml)' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand rollout; and __fish_seen_subcommand_from get" -s o -l output -d 'Output format' -r -f -a "table\t''
wide\t'A table with more columns where a command has them (`agents list -o wide`)'
json\t''"
complete -c fluxctl -n "__fish_fluxctl_using_subcommand rollout; and __fish_seen_subcommand_from get" -l insecure -d 'Accept any server certificate (like curl -k)'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand rollout; and __fish_seen_subcommand_from get" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand rollout; and __fish_seen_subcommand_from get" -s V -l version -d 'Print version'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand rollout; and __fish_seen_subcommand_from wait" -l server -d 'Control-plane URL (overrides the context)' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand rollout; and __fish_seen_subcommand_from wait" -l token -d 'Bearer token (overrides the context; prefer FLUX_TOKEN or --token-file)' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand rollout; and __fish_seen_subcommand_from wait" -l token-file -d 'File holding the bearer token' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand rollout; and __fish_seen_subcommand_from wait" -l ca -d 'CA certificate (PEM) to trust' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand rollout; and __fish_seen_subcommand_from wait" -l context -d 'Context from the config file to use' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand rollout; and __fish_seen_subcommand_from wait" -l config -d 'Config file (default ~/.config/fluxforge/config.toml)' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand rollout; and __fish_seen_subcommand_from wait" -s o -l output -d 'Output format' -r -f -a "table\t''
wide\t'A table with more columns where a command has them (`agents list -o wide`)'
json\t''"
complete -c fluxctl -n "__fish_fluxctl_using_subcommand rollout; and __fish_seen_subcommand_from wait" -l insecure -d 'Accept any server certificate (like curl -k)'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand rollout; and __fish_seen_subcommand_from wait" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand rollout; and __fish_seen_subcommand_from wait" -s V -l version -d 'Print version'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand rollout; and __fish_seen_subcommand_from pause" -l server -d 'Control-plane URL (overrides the context)' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand rollout; and __fish_seen_subcommand_from pause" -l token -d 'Bearer token (overrides the context; prefer FLUX_TOKEN or --token-file)' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand rollout; and __fish_seen_subcommand_from pause" -l token-file -d 'File holding the bearer token' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand rollout; and __fish_seen_subcommand_from pause" -l ca -d 'CA certificate (PEM) to trust' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand rollout; and __fish_seen_subcommand_from pause" -l context -d 'Context from the config file to use' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand rollout; and __fish_seen_subcommand_from pause" -l config -d 'Config file (default ~/.config/fluxforge/config.toml)' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand rollout; and __fish_seen_subcommand_from pause" -s o -l output -d 'Output format' -r -f -a "table\t''
wide\t'A table with more columns where a command has them (`agents list -o wide`)'
json\t''"
complete -c fluxctl -n "__fish_fluxctl_using_subcommand rollout; and __fish_seen_subcommand_from pause" -l insecure -d 'Accept any server certificate (like curl -k)'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand rollout; and __fish_seen_subcommand_from pause" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand rollout; and __fish_seen_subcommand_from pause" -s V -l version -d 'Print version'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand rollout; and __fish_seen_subcommand_from resume" -l server -d 'Control-plane URL (overrides the context)' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand rollout; and __fish_seen_subcommand_from resume" -l token -d 'Bearer token (overrides the context; prefer FLUX_TOKEN or --token-file)' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand rollout; and __fish_seen_subcommand_from resume" -l token-file -d 'File holding the bearer token' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand rollout; and __fish_seen_subcommand_from resume" -l ca -d 'CA certificate (PEM) to trust' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand rollout; and __fish_seen_subcommand_from resume" -l context -d 'Context from the config file to use' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand rollout; and __fish_seen_subcommand_from resume" -l config -d 'Config file (default ~/.config/fluxforge/config.toml)' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand rollout; and __fish_seen_subcommand_from resume" -s o -l output -d 'Output format' -r -f -a "table\t''
wide\t'A table with more columns where a command has them (`agents list -o wide`)'
json\t''"
complete -c fluxctl -n "__fish_fluxctl_using_subcommand rollout; and __fish_seen_subcommand_from resume" -l insecure -d 'Accept any server certificate (like curl -k)'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand rollout; and __fish_seen_subcommand_from resume" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand rollout; and __fish_seen_subcommand_from resume" -s V -l version -d 'Print version'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand rollout; and __fish_seen_subcommand_from cancel" -l server -d 'Control-plane URL (overrides the context)' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand rollout; and __fish_seen_subcommand_from cancel" -l token -d 'Bearer token (overrides the context; prefer FLUX_TOKEN or --token-file)' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand rollout; and __fish_seen_subcommand_from cancel" -l token-file -d 'File holding the bearer token' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand rollout; and __fish_seen_subcommand_from cancel" -l ca -d 'CA certificate (PEM) to trust' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand rollout; and __fish_seen_subcommand_from cancel" -l context -d 'Context from the config file to use' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand rollout; and __fish_seen_subcommand_from cancel" -l config -d 'Config file (default ~/.config/fluxforge/config.toml)' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand rollout; and __fish_seen_subcommand_from cancel" -s o -l output -d 'Output format' -r -f -a "table\t''
wide\t'A table with more columns where a command has them (`agents list -o wide`)'
json\t''"
complete -c fluxctl -n "__fish_fluxctl_using_subcommand rollout; and __fish_seen_subcommand_from cancel" -l insecure -d 'Accept any server certificate (like curl -k)'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand rollout; and __fish_seen_subcommand_from cancel" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand rollout; and __fish_seen_subcommand_from cancel" -s V -l version -d 'Print version'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand rollout; and __fish_seen_subcommand_from retry" -l server -d 'Control-plane URL (overrides the context)' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand rollout; and __fish_seen_subcommand_from retry" -l token -d 'Bearer token (overrides the context; prefer FLUX_TOKEN or --token-file)' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand rollout; and __fish_seen_subcommand_from retry" -l token-file -d 'File holding the bearer token' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand rollout; and __fish_seen_subcommand_from retry" -l ca -d 'CA certificate (PEM) to trust' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand rollout; and __fish_seen_subcommand_from retry" -l context -d 'Context from the config file to use' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand rollout; and __fish_seen_subcommand_from retry" -l config -d 'Config file (default ~/.config/fluxforge/config.toml)' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand rollout; and __fish_seen_subcommand_from retry" -s o -l output -d 'Output format' -r -f -a "table\t''
wide\t'A table with more columns where a command has them (`agents list -o wide`)'
json\t''"
complete -c fluxctl -n "__fish_fluxctl_using_subcommand rollout; and __fish_seen_subcommand_from retry" -s w -l wait -d 'Follow the new rollout until it finishes'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand rollout; and __fish_seen_subcommand_from retry" -l insecure -d 'Accept any server certificate (like curl -k)'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand rollout; and __fish_seen_subcommand_from retry" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand rollout; and __fish_seen_subcommand_from retry" -s V -l version -d 'Print version'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand rollout; and __fish_seen_subcommand_from help" -f -a "list" -d 'List rollouts, newest first'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand rollout; and __fish_seen_subcommand_from help" -f -a "get" -d 'Show a rollout and its targets'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand rollout; and __fish_seen_subcommand_from help" -f -a "wait" -d 'Follow a rollout until it finishes; exits 0, 1, 3 or 130 like `job run --wait`'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand rollout; and __fish_seen_subcommand_from help" -f -a "pause" -d 'Start no new target until resumed (running ones finish)'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand rollout; and __fish_seen_subcommand_from help" -f -a "resume" -d 'Resume a paused rollout'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand rollout; and __fish_seen_subcommand_from help" -f -a "cancel" -d 'Cancel a rollout: nothing new starts, running targets are cancelled'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand rollout; and __fish_seen_subcommand_from help" -f -a "retry" -d 'Run the failed, skipped and not started targets of a finished rollout again, as a new rollout that references it'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand rollout; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand schedule; and not __fish_seen_subcommand_from create list get pause resume trigger delete help" -l server -d 'Control-plane URL (overrides the context)' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand schedule; and not __fish_seen_subcommand_from create list get pause resume trigger delete help" -l token -d 'Bearer token (overrides the context; prefer FLUX_TOKEN or --token-file)' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand schedule; and not __fish_seen_subcommand_from create list get pause resume trigger delete help" -l token-file -d 'File holding the bearer token' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand schedule; and not __fish_seen_subcommand_from create list get pause resume trigger delete help" -l ca -d 'CA certificate (PEM) to trust' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand schedule; and not __fish_seen_subcommand_from create list get pause resume trigger delete help" -l context -d 'Context from the config file to use' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand schedule; and not __fish_seen_subcommand_from create list get pause resume trigger delete help" -l config -d 'Config file (default ~/.config/fluxforge/config.toml)' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand schedule; and not __fish_seen_subcommand_from create list get pause resume trigger delete help" -s o -l output -d 'Output format' -r -f -a "table\t''
wide\t'A table with more columns where a command has them (`agents list -o wide`)'
json\t''"
complete -c fluxctl -n "__fish_fluxctl_using_subcommand schedule; and not __fish_seen_subcommand_from create list get pause resume trigger delete help" -l insecure -d 'Accept any server certificate (like curl -k)'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand schedule; and not __fish_seen_subcommand_from create list get pause resume trigger delete help" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand schedule; and not __fish_seen_subcommand_from create list get pause resume trigger delete help" -s V -l version -d 'Print version'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand schedule; and not __fish_seen_subcommand_from create list get pause resume trigger delete help" -f -a "create" -d 'Create a schedule: a command run on a cron expression'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand schedule; and not __fish_seen_subcommand_from create list get pause resume trigger delete help" -f -a "list" -d 'List schedules with their next slot and last run'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand schedule; and not __fish_seen_subcommand_from create list get pause resume trigger delete help" -f -a "get" -d 'Show a schedule: its next five slots and its last runs with their results'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand schedule; and not __fish_seen_subcommand_from create list get pause resume trigger delete help" -f -a "pause" -d 'Stop firing (slots during the pause are not caught up)'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand schedule; and not __fish_seen_subcommand_from create list get pause resume trigger delete help" -f -a "resume" -d 'Fire again from now on'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand schedule; and not __fish_seen_subcommand_from create list get pause resume trigger delete help" -f -a "trigger" -d 'Start one run now'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand schedule; and not __fish_seen_subcommand_from create list get pause resume trigger delete help" -f -a "delete" -d 'Delete a schedule (its jobs stay)'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand schedule; and not __fish_seen_subcommand_from create list get pause resume trigger delete help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand schedule; and __fish_seen_subcommand_from create" -l cron -d 'Cron expression: five fields, six with seconds first, or @hourly, @daily...' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand schedule; and __fish_seen_subcommand_from create" -l tz -d 'IANA time zone the expression is read in' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand schedule; and __fish_seen_subcommand_from create" -s n -l node -d 'Agent to run on (default: any online agent of the tenant)' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand schedule; and __fish_seen_subcommand_from create" -s l -l selector -d 'Run on an agent this selector matches: KEY=VALUE, or any expression such as \'role in (web,api),fact.cpus>=4\' (repeatable: all must hold)' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand schedule; and __fish_seen_subcommand_from create" -s e -l env -d 'Environment variable KEY=VALUE (repeatable)' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand schedule; and __fish_seen_subcommand_from create" -l secret-env -d 'Secret environment variable NAME, its value taken from fluxctl\'s own environment (so it is never on a command line); masked in the job\'s output and never shown, and a schedule keeps only its digest (repeatable)' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand schedule; and __fish_seen_subcommand_from create" -l timeout -d 'Kill each run after this long' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand schedule; and __fish_seen_subcommand_from create" -l priority -d 'Higher runs first among the tenant\'s queued jobs (-100 to 100)' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand schedule; and __fish_seen_subcommand_from create" -l overlap -d 'While the previous run is unfinished: allow, skip or queue' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand schedule; and __fish_seen_subcommand_from create" -l missed -d 'Slots no leader fired in time: skip, once, or catch-up=N' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand schedule; and __fish_seen_subcommand_from create" -l grace -d 'How late a slot may still run as on time' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand schedule; and __fish_seen_subcommand_from create" -l jitter -d 'Delay each slot by up to this much (the same on every node)' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand schedule; and __fish_seen_subcommand_from create" -l max-concurrency -d 'With --all: run as a rollout, this many targets at once (a count or a percentage of the targets, rounded up, at least 1)' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand schedule; and __fish_seen_subcommand_from create" -l max-errors -d 'With --all: errors tolerated over the whole rollout (count or percentage); one more stops it. Default 0 in a rollout' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand schedule; and __fish_seen_subcommand_from create" -l canary -d 'With --all: that many targets run first, alone; any canary failure stops the rollout' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand schedule; and __fish_seen_subcommand_from create" -l verify -d 'With --all: a shell command run on each target after its job succeeded; its failure is an error' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand schedule; and __fish_seen_subcommand_from create" -l batch-wait -d 'With --all: run in batches of --max-concurrency, waiting this long between them' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand schedule; and __fish_seen_subcommand_from create" -l on-halt -d 'With --all: when the budget is spent, let running targets finish (wait) or cancel them' -r -f -a "wait\t''
cancel\t''"
complete -c fluxctl -n "__fish_fluxctl_using_subcommand schedule; and __fish_seen_subcommand_from create" -l server -d 'Control-plane URL (overrides the context)' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand schedule; and __fish_seen_subcommand_from create" -l token -d 'Bearer token (overrides the context; prefer FLUX_TOKEN or --token-file)' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand schedule; and __fish_seen_subcommand_from create" -l token-file -d 'File holding the bearer token' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand schedule; and __fish_seen_subcommand_from create" -l ca -d 'CA certificate (PEM) to trust' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand schedule; and __fish_seen_subcommand_from create" -l context -d 'Context from the config file to use' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand schedule; and __fish_seen_subcommand_from create" -l config -d 'Config file (default ~/.config/fluxforge/config.toml)' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand schedule; and __fish_seen_subcommand_from create" -s o -l output -d 'Output format' -r -f -a "table\t''
wide\t'A table with more columns where a command has them (`agents list -o wide`)'
json\t''"
complete -c fluxctl -n "__fish_fluxctl_using_subcommand schedule; and __fish_seen_subcommand_from create" -l all -d 'With --selector: run on every matching agent, one job each (a fan-out; a schedule resolves the selector at each slot)'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand schedule; and __fish_seen_subcommand_from create" -l allow-unknown-node -d 'With --node: accept the job even if no agent has enrolled or registered as that node yet (one about to enroll); without it such a job is refused'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand schedule; and __fish_seen_subcommand_from create" -l paused -d 'Create it paused'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand schedule; and __fish_seen_subcommand_from create" -l shell -d 'Join all arguments into one shell command line (default with one argument)'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand schedule; and __fish_seen_subcommand_from create" -l offline-is-error -d 'With --all: count a target whose agent is offline at its turn as an error'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand schedule; and __fish_seen_subcommand_from create" -l insecure -d 'Accept any server certificate (like curl -k)'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand schedule; and __fish_seen_subcommand_from create" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand schedule; and __fish_seen_subcommand_from create" -s V -l version -d 'Print version'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand schedule; and __fish_seen_subcommand_from list" -l limit -d 'At most this many' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand schedule; and __fish_seen_subcommand_from list" -l after -d 'Start after this schedule name' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand schedule; and __fish_seen_subcommand_from list" -l server -d 'Control-plane URL (overrides the context)' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand schedule; and __fish_seen_subcommand_from list" -l token -d 'Bearer token (overrides the context; prefer FLUX_TOKEN or --token-file)' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand schedule; and __fish_seen_subcommand_from list" -l token-file -d 'File holding the bearer token' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand schedule; and __fish_seen_subcommand_from list" -l ca -d 'CA certificate (PEM) to trust' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand schedule; and __fish_seen_subcommand_from list" -l context -d 'Context from the config file to use' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand schedule; and __fish_seen_subcommand_from list" -l config -d 'Config file (default ~/.config/fluxforge/config.toml)' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand schedule; and __fish_seen_subcommand_from list" -s o -l output -d 'Output format' -r -f -a "table\t''
wide\t'A table with more columns where a command has them (`agents list -o wide`)'
json\t''"
complete -c fluxctl -n "__fish_fluxctl_using_subcommand schedule; and __fish_seen_subcommand_from list" -l insecure -d 'Accept any server certificate (like curl -k)'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand schedule; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand schedule; and __fish_seen_subcommand_from list" -s V -l version -d 'Print version'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand schedule; and __fish_seen_subcommand_from get" -l server -d 'Control-plane URL (overrides the context)' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand schedule; and __fish_seen_subcommand_from get" -l token -d 'Bearer token (overrides the context; prefer FLUX_TOKEN or --token-file)' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand schedule; and __fish_seen_subcommand_from get" -l token-file -d 'File holding the bearer token' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand schedule; and __fish_seen_subcommand_from get" -l ca -d 'CA certificate (PEM) to trust' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand schedule; and __fish_seen_subcommand_from get" -l context -d 'Context from the config file to use' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand schedule; and __fish_seen_subcommand_from get" -l config -d 'Config file (default ~/.config/fluxforge/config.toml)' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand schedule; and __fish_seen_subcommand_from get" -s o -l output -d 'Output format' -r -f -a "table\t''
wide\t'A table with more columns where a command has them (`agents list -o wide`)'
json\t''"
complete -c fluxctl -n "__fish_fluxctl_using_subcommand schedule; and __fish_seen_subcommand_from get" -l insecure -d 'Accept any server certificate (like curl -k)'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand schedule; and __fish_seen_subcommand_from get" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand schedule; and __fish_seen_subcommand_from get" -s V -l version -d 'Print version'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand schedule; and __fish_seen_subcommand_from pause" -l server -d 'Control-plane URL (overrides the context)' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand schedule; and __fish_seen_subcommand_from pause" -l token -d 'Bearer token (overrides the context; prefer FLUX_TOKEN or --token-file)' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand schedule; and __fish_seen_subcommand_from pause" -l token-file -d 'File holding the bearer token' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand schedule; and __fish_seen_subcommand_from pause" -l ca -d 'CA certificate (PEM) to trust' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand schedule; and __fish_seen_subcommand_from pause" -l context -d 'Context from the config file to use' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand schedule; and __fish_seen_subcommand_from pause" -l config -d 'Config file (default ~/.config/fluxforge/config.toml)' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand schedule; and __fish_seen_subcommand_from pause" -s o -l output -d 'Output format' -r -f -a "table\t''
wide\t'A table with more columns where a command has them (`agents list -o wide`)'
json\t''"
complete -c fluxctl -n "__fish_fluxctl_using_subcommand schedule; and __fish_seen_subcommand_from pause" -l insecure -d 'Accept any server certificate (like curl -k)'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand schedule; and __fish_seen_subcommand_from pause" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand schedule; and __fish_seen_subcommand_from pause" -s V -l version -d 'Print version'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand schedule; and __fish_seen_subcommand_from resume" -l server -d 'Control-plane URL (overrides the context)' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand schedule; and __fish_seen_subcommand_from resume" -l token -d 'Bearer token (overrides the context; prefer FLUX_TOKEN or --token-file)' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand schedule; and __fish_seen_subcommand_from resume" -l token-file -d 'File holding the bearer token' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand schedule; and __fish_seen_subcommand_from resume" -l ca -d 'CA certificate (PEM) to trust' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand schedule; and __fish_seen_subcommand_from resume" -l context -d 'Context from the config file to use' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand schedule; and __fish_seen_subcommand_from resume" -l config -d 'Config file (default ~/.config/fluxforge/config.toml)' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand schedule; and __fish_seen_subcommand_from resume" -s o -l output -d 'Output format' -r -f -a "table\t''
wide\t'A table with more columns where a command has them (`agents list -o wide`)'
json\t''"
complete -c fluxctl -n "__fish_fluxctl_using_subcommand schedule; and __fish_seen_subcommand_from resume" -l insecure -d 'Accept any server certificate (like curl -k)'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand schedule; and __fish_seen_subcommand_from resume" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand schedule; and __fish_seen_subcommand_from resume" -s V -l version -d 'Print version'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand schedule; and __fish_seen_subcommand_from trigger" -l server -d 'Control-plane URL (overrides the context)' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand schedule; and __fish_seen_subcommand_from trigger" -l token -d 'Bearer token (overrides the context; prefer FLUX_TOKEN or --token-file)' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand schedule; and __fish_seen_subcommand_from trigger" -l token-file -d 'File holding the bearer token' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand schedule; and __fish_seen_subcommand_from trigger" -l ca -d 'CA certificate (PEM) to trust' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand schedule; and __fish_seen_subcommand_from trigger" -l context -d 'Context from the config file to use' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand schedule; and __fish_seen_subcommand_from trigger" -l config -d 'Config file (default ~/.config/fluxforge/config.toml)' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand schedule; and __fish_seen_subcommand_from trigger" -s o -l output -d 'Output format' -r -f -a "table\t''
wide\t'A table with more columns where a command has them (`agents list -o wide`)'
json\t''"
complete -c fluxctl -n "__fish_fluxctl_using_subcommand schedule; and __fish_seen_subcommand_from trigger" -l insecure -d 'Accept any server certificate (like curl -k)'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand schedule; and __fish_seen_subcommand_from trigger" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand schedule; and __fish_seen_subcommand_from trigger" -s V -l version -d 'Print version'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand schedule; and __fish_seen_subcommand_from delete" -l if-version -d 'Delete only if the schedule is still at this version' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand schedule; and __fish_seen_subcommand_from delete" -l server -d 'Control-plane URL (overrides the context)' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand schedule; and __fish_seen_subcommand_from delete" -l token -d 'Bearer token (overrides the context; prefer FLUX_TOKEN or --token-file)' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand schedule; and __fish_seen_subcommand_from delete" -l token-file -d 'File holding the bearer token' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand schedule; and __fish_seen_subcommand_from delete" -l ca -d 'CA certificate (PEM) to trust' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand schedule; and __fish_seen_subcommand_from delete" -l context -d 'Context from the config file to use' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand schedule; and __fish_seen_subcommand_from delete" -l config -d 'Config file (default ~/.config/fluxforge/config.toml)' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand schedule; and __fish_seen_subcommand_from delete" -s o -l output -d 'Output format' -r -f -a "table\t''
wide\t'A table with more columns where a command has them (`agents list -o wide`)'
json\t''"
complete -c fluxctl -n "__fish_fluxctl_using_subcommand schedule; and __fish_seen_subcommand_from delete" -l insecure -d 'Accept any server certificate (like curl -k)'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand schedule; and __fish_seen_subcommand_from delete" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand schedule; and __fish_seen_subcommand_from delete" -s V -l version -d 'Print version'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand schedule; and __fish_seen_subcommand_from help" -f -a "create" -d 'Create a schedule: a command run on a cron expression'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand schedule; and __fish_seen_subcommand_from help" -f -a "list" -d 'List schedules with their next slot and last run'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand schedule; and __fish_seen_subcommand_from help" -f -a "get" -d 'Show a schedule: its next five slots and its last runs with their results'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand schedule; and __fish_seen_subcommand_from help" -f -a "pause" -d 'Stop firing (slots during the pause are not caught up)'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand schedule; and __fish_seen_subcommand_from help" -f -a "resume" -d 'Fire again from now on'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand schedule; and __fish_seen_subcommand_from help" -f -a "trigger" -d 'Start one run now'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand schedule; and __fish_seen_subcommand_from help" -f -a "delete" -d 'Delete a schedule (its jobs stay)'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand schedule; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand agents; and not __fish_seen_subcommand_from list get drain uncordon revoke label help" -l server -d 'Control-plane URL (overrides the context)' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand agents; and not __fish_seen_subcommand_from list get drain uncordon revoke label help" -l token -d 'Bearer token (overrides the context; prefer FLUX_TOKEN or --token-file)' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand agents; and not __fish_seen_subcommand_from list get drain uncordon revoke label help" -l token-file -d 'File holding the bearer token' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand agents; and not __fish_seen_subcommand_from list get drain uncordon revoke label help" -l ca -d 'CA certificate (PEM) to trust' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand agents; and not __fish_seen_subcommand_from list get drain uncordon revoke label help" -l context -d 'Context from the config file to use' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand agents; and not __fish_seen_subcommand_from list get drain uncordon revoke label help" -l config -d 'Config file (default ~/.config/fluxforge/config.toml)' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand agents; and not __fish_seen_subcommand_from list get drain uncordon revoke label help" -s o -l output -d 'Output format' -r -f -a "table\t''
wide\t'A table with more columns where a command has them (`agents list -o wide`)'
json\t''"
complete -c fluxctl -n "__fish_fluxctl_using_subcommand agents; and not __fish_seen_subcommand_from list get drain uncordon revoke label help" -l insecure -d 'Accept any server certificate (like curl -k)'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand agents; and not __fish_seen_subcommand_from list get drain uncordon revoke label help" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand agents; and not __fish_seen_subcommand_from list get drain uncordon revoke label help" -s V -l version -d 'Print version'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand agents; and not __fish_seen_subcommand_from list get drain uncordon revoke label help" -f -a "list" -d 'List agents of the tenant (`-o wide`: admin labels and the main facts too)'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand agents; and not __fish_seen_subcommand_from list get drain uncordon revoke label help" -f -a "get" -d 'Show one agent: labels, admin labels and facts'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand agents; and not __fish_seen_subcommand_from list get drain uncordon revoke label help" -f -a "drain" -d 'Stop new work reaching an agent; what it runs finishes'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand agents; and not __fish_seen_subcommand_from list get drain uncordon revoke label help" -f -a "uncordon" -d 'Let new work reach a drained agent again'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand agents; and not __fish_seen_subcommand_from list get drain uncordon revoke label help" -f -a "revoke" -d 'End every credential of an agent issued before now: it is refused from its next call and its attempts are requeued as for a dead agent. It can enroll again later'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand agents; and not __fish_seen_subcommand_from list get drain uncordon revoke label help" -f -a "label" -d 'Set admin labels (KEY=VALUE) and remove them (--remove KEY): admins only. They are kept apart from the labels the agent declares, survive its re-registrations, and win over a declared label of the same key'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand agents; and not __fish_seen_subcommand_from list get drain uncordon revoke label help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand agents; and __fish_seen_subcommand_from list" -s l -l selector -d 'Only the agents this selector matches, e.g. \'role in (web,api),fact.cpus>=4\' (repeatable: all must hold). Previews what a job or state with it would target' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand agents; and __fish_seen_subcommand_from list" -l server -d 'Control-plane URL (overrides the context)' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand agents; and __fish_seen_subcommand_from list" -l token -d 'Bearer token (overrides the context; prefer FLUX_TOKEN or --token-file)' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand agents; and __fish_seen_subcommand_from list" -l token-file -d 'File holding the bearer token' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand agents; and __fish_seen_subcommand_from list" -l ca -d 'CA certificate (PEM) to trust' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand agents; and __fish_seen_subcommand_from list" -l context -d 'Context from the config file to use' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand agents; and __fish_seen_subcommand_from list" -l config -d 'Config file (default ~/.config/fluxforge/config.toml)' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand agents; and __fish_seen_subcommand_from list" -s o -l output -d 'Output format' -r -f -a "table\t''
wide\t'A table with more columns where a command has them (`agents list -o wide`)'
json\t''"
complete -c fluxctl -n "__fish_fluxctl_using_subcommand agents; and __fish_seen_subcommand_from list" -l insecure -d 'Accept any server certificate (like curl -k)'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand agents; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand agents; and __fish_seen_subcommand_from list" -s V -l version -d 'Print version'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand agents; and __fish_seen_subcommand_from get" -l server -d 'Control-plane URL (overrides the context)' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand agents; and __fish_seen_subcommand_from get" -l token -d 'Bearer token (overrides the context; prefer FLUX_TOKEN or --token-file)' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand agents; and __fish_seen_subcommand_from get" -l token-file -d 'File holding the bearer token' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand agents; and __fish_seen_subcommand_from get" -l ca -d 'CA certificate (PEM) to trust' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand agents; and __fish_seen_subcommand_from get" -l context -d 'Context from the config file to use' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand agents; and __fish_seen_subcommand_from get" -l config -d 'Config file (default ~/.config/fluxforge/config.toml)' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand agents; and __fish_seen_subcommand_from get" -s o -l output -d 'Output format' -r -f -a "table\t''
wide\t'A table with more columns where a command has them (`agents list -o wide`)'
json\t''"
complete -c fluxctl -n "__fish_fluxctl_using_subcommand agents; and __fish_seen_subcommand_from get" -l insecure -d 'Accept any server certificate (like curl -k)'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand agents; and __fish_seen_subcommand_from get" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand agents; and __fish_seen_subcommand_from get" -s V -l version -d 'Print version'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand agents; and __fish_seen_subcommand_from drain" -l server -d 'Control-plane URL (overrides the context)' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand agents; and __fish_seen_subcommand_from drain" -l token -d 'Bearer token (overrides the context; prefer FLUX_TOKEN or --token-file)' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand agents; and __fish_seen_subcommand_from drain" -l token-file -d 'File holding the bearer token' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand agents; and __fish_seen_subcommand_from drain" -l ca -d 'CA certificate (PEM) to trust' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand agents; and __fish_seen_subcommand_from drain" -l context -d 'Context from the config file to use' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand agents; and __fish_seen_subcommand_from drain" -l config -d 'Config file (default ~/.config/fluxforge/config.toml)' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand agents; and __fish_seen_subcommand_from drain" -s o -l output -d 'Output format' -r -f -a "table\t''
wide\t'A table with more columns where a command has them (`agents list -o wide`)'
json\t''"
complete -c fluxctl -n "__fish_fluxctl_using_subcommand agents; and __fish_seen_subcommand_from drain" -l insecure -d 'Accept any server certificate (like curl -k)'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand agents; and __fish_seen_subcommand_from drain" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand agents; and __fish_seen_subcommand_from drain" -s V -l version -d 'Print version'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand agents; and __fish_seen_subcommand_from uncordon" -l server -d 'Control-plane URL (overrides the context)' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand agents; and __fish_seen_subcommand_from uncordon" -l token -d 'Bearer token (overrides the context; prefer FLUX_TOKEN or --token-file)' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand agents; and __fish_seen_subcommand_from uncordon" -l token-file -d 'File holding the bearer token' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand agents; and __fish_seen_subcommand_from uncordon" -l ca -d 'CA certificate (PEM) to trust' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand agents; and __fish_seen_subcommand_from uncordon" -l context -d 'Context from the config file to use' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand agents; and __fish_seen_subcommand_from uncordon" -l config -d 'Config file (default ~/.config/fluxforge/config.toml)' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand agents; and __fish_seen_subcommand_from uncordon" -s o -l output -d 'Output format' -r -f -a "table\t''
wide\t'A table with more columns where a command has them (`agents list -o wide`)'
json\t''"
complete -c fluxctl -n "__fish_fluxctl_using_subcommand agents; and __fish_seen_subcommand_from uncordon" -l insecure -d 'Accept any server certificate (like curl -k)'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand agents; and __fish_seen_subcommand_from uncordon" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand agents; and __fish_seen_subcommand_from uncordon" -s V -l version -d 'Print version'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand agents; and __fish_seen_subcommand_from revoke" -l server -d 'Control-plane URL (overrides the context)' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand agents; and __fish_seen_subcommand_from revoke" -l token -d 'Bearer token (overrides the context; prefer FLUX_TOKEN or --token-file)' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand agents; and __fish_seen_subcommand_from revoke" -l token-file -d 'File holding the bearer token' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand agents; and __fish_seen_subcommand_from revoke" -l ca -d 'CA certificate (PEM) to trust' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand agents; and __fish_seen_subcommand_from revoke" -l context -d 'Context from the config file to use' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand agents; and __fish_seen_subcommand_from revoke" -l config -d 'Config file (default ~/.config/fluxforge/config.toml)' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand agents; and __fish_seen_subcommand_from revoke" -s o -l output -d 'Output format' -r -f -a "table\t''
wide\t'A table with more columns where a command has them (`agents list -o wide`)'
json\t''"
complete -c fluxctl -n "__fish_fluxctl_using_subcommand agents; and __fish_seen_subcommand_from revoke" -l insecure -d 'Accept any server certificate (like curl -k)'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand agents; and __fish_seen_subcommand_from revoke" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand agents; and __fish_seen_subcommand_from revoke" -s V -l version -d 'Print version'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand agents; and __fish_seen_subcommand_from label" -l remove -d 'Admin label to remove (repeatable)' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand agents; and __fish_seen_subcommand_from label" -l server -d 'Control-plane URL (overrides the context)' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand agents; and __fish_seen_subcommand_from label" -l token -d 'Bearer token (overrides the context; prefer FLUX_TOKEN or --token-file)' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand agents; and __fish_seen_subcommand_from label" -l token-file -d 'File holding the bearer token' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand agents; and __fish_seen_subcommand_from label" -l ca -d 'CA certificate (PEM) to trust' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand agents; and __fish_seen_subcommand_from label" -l context -d 'Context from the config file to use' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand agents; and __fish_seen_subcommand_from label" -l config -d 'Config file (default ~/.config/fluxforge/config.toml)' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand agents; and __fish_seen_subcommand_from label" -s o -l output -d 'Output format' -r -f -a "table\t''
wide\t'A table with more columns where a command has them (`agents list -o wide`)'
json\t''"
complete -c fluxctl -n "__fish_fluxctl_using_subcommand agents; and __fish_seen_subcommand_from label" -l insecure -d 'Accept any server certificate (like curl -k)'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand agents; and __fish_seen_subcommand_from label" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand agents; and __fish_seen_subcommand_from label" -s V -l version -d 'Print version'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand agents; and __fish_seen_subcommand_from help" -f -a "list" -d 'List agents of the tenant (`-o wide`: admin labels and the main facts too)'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand agents; and __fish_seen_subcommand_from help" -f -a "get" -d 'Show one agent: labels, admin labels and facts'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand agents; and __fish_seen_subcommand_from help" -f -a "drain" -d 'Stop new work reaching an agent; what it runs finishes'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand agents; and __fish_seen_subcommand_from help" -f -a "uncordon" -d 'Let new work reach a drained agent again'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand agents; and __fish_seen_subcommand_from help" -f -a "revoke" -d 'End every credential of an agent issued before now: it is refused from its next call and its attempts are requeued as for a dead agent. It can enroll again later'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand agents; and __fish_seen_subcommand_from help" -f -a "label" -d 'Set admin labels (KEY=VALUE) and remove them (--remove KEY): admins only. They are kept apart from the labels the agent declares, survive its re-registrations, and win over a declared label of the same key'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand agents; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand token; and not __fish_seen_subcommand_from create revoke help" -l server -d 'Control-plane URL (overrides the context)' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand token; and not __fish_seen_subcommand_from create revoke help" -l token -d 'Bearer token (overrides the context; prefer FLUX_TOKEN or --token-file)' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand token; and not __fish_seen_subcommand_from create revoke help" -l token-file -d 'File holding the bearer token' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand token; and not __fish_seen_subcommand_from create revoke help" -l ca -d 'CA certificate (PEM) to trust' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand token; and not __fish_seen_subcommand_from create revoke help" -l context -d 'Context from the config file to use' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand token; and not __fish_seen_subcommand_from create revoke help" -l config -d 'Config file (default ~/.config/fluxforge/config.toml)' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand token; and not __fish_seen_subcommand_from create revoke help" -s o -l output -d 'Output format' -r -f -a "table\t''
wide\t'A table with more columns where a command has them (`agents list -o wide`)'
json\t''"
complete -c fluxctl -n "__fish_fluxctl_using_subcommand token; and not __fish_seen_subcommand_from create revoke help" -l insecure -d 'Accept any server certificate (like curl -k)'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand token; and not __fish_seen_subcommand_from create revoke help" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand token; and not __fish_seen_subcommand_from create revoke help" -s V -l version -d 'Print version'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand token; and not __fish_seen_subcommand_from create revoke help" -f -a "create" -d 'Issue a token'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand token; and not __fish_seen_subcommand_from create revoke help" -f -a "revoke" -d 'Revoke a token, given the token or its id (jti)'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand token; and not __fish_seen_subcommand_from create revoke help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand token; and __fish_seen_subcommand_from create" -l tenant -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand token; and __fish_seen_subcommand_from create" -l role -r -f -a "admin\t''
operator\t''
viewer\t''
agent\t''
enroll\t''"
complete -c fluxctl -n "__fish_fluxctl_using_subcommand token; and __fish_seen_subcommand_from create" -l ttl -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand token; and __fish_seen_subcommand_from create" -l node-id -d 'Node id bound into an agent token' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand token; and __fish_seen_subcommand_from create" -l subject -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand token; and __fish_seen_subcommand_from create" -l uses -d 'Enrollment tokens (--role enroll): how many agents may enroll with it' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand token; and __fish_seen_subcommand_from create" -l label -d 'Enrollment tokens: an admin label KEY=VALUE given to every agent enrolled with it (repeatable)' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand token; and __fish_seen_subcommand_from create" -l server -d 'Control-plane URL (overrides the context)' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand token; and __fish_seen_subcommand_from create" -l token -d 'Bearer token (overrides the context; prefer FLUX_TOKEN or --token-file)' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand token; and __fish_seen_subcommand_from create" -l token-file -d 'File holding the bearer token' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand token; and __fish_seen_subcommand_from create" -l ca -d 'CA certificate (PEM) to trust' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand token; and __fish_seen_subcommand_from create" -l context -d 'Context from the config file to use' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand token; and __fish_seen_subcommand_from create" -l config -d 'Config file (default ~/.config/fluxforge/config.toml)' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand token; and __fish_seen_subcommand_from create" -s o -l output -d 'Output format' -r -f -a "table\t''
wide\t'A table with more columns where a command has them (`agents list -o wide`)'
json\t''"
complete -c fluxctl -n "__fish_fluxctl_using_subcommand token; and __fish_seen_subcommand_from create" -l insecure -d 'Accept any server certificate (like curl -k)'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand token; and __fish_seen_subcommand_from create" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand token; and __fish_seen_subcommand_from create" -s V -l version -d 'Print version'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand token; and __fish_seen_subcommand_from revoke" -l jti -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand token; and __fish_seen_subcommand_from revoke" -l server -d 'Control-plane URL (overrides the context)' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand token; and __fish_seen_subcommand_from revoke" -l token -d 'Bearer token (overrides the context; prefer FLUX_TOKEN or --token-file)' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand token; and __fish_seen_subcommand_from revoke" -l token-file -d 'File holding the bearer token' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand token; and __fish_seen_subcommand_from revoke" -l ca -d 'CA certificate (PEM) to trust' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand token; and __fish_seen_subcommand_from revoke" -l context -d 'Context from the config file to use' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand token; and __fish_seen_subcommand_from revoke" -l config -d 'Config file (default ~/.config/fluxforge/config.toml)' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand token; and __fish_seen_subcommand_from revoke" -s o -l output -d 'Output format' -r -f -a "table\t''
wide\t'A table with more columns where a command has them (`agents list -o wide`)'
json\t''"
complete -c fluxctl -n "__fish_fluxctl_using_subcommand token; and __fish_seen_subcommand_from revoke" -l insecure -d 'Accept any server certificate (like curl -k)'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand token; and __fish_seen_subcommand_from revoke" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand token; and __fish_seen_subcommand_from revoke" -s V -l version -d 'Print version'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand token; and __fish_seen_subcommand_from help" -f -a "create" -d 'Issue a token'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand token; and __fish_seen_subcommand_from help" -f -a "revoke" -d 'Revoke a token, given the token or its id (jti)'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand token; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand apply" -s f -l filename -d 'State file (`-` reads stdin)' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand apply" -l timeout -d 'How long --wait waits' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand apply" -l server -d 'Control-plane URL (overrides the context)' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand apply" -l token -d 'Bearer token (overrides the context; prefer FLUX_TOKEN or --token-file)' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand apply" -l token-file -d 'File holding the bearer token' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand apply" -l ca -d 'CA certificate (PEM) to trust' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand apply" -l context -d 'Context from the config file to use' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand apply" -l config -d 'Config file (default ~/.config/fluxforge/config.toml)' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand apply" -s o -l output -d 'Output format' -r -f -a "table\t''
wide\t'A table with more columns where a command has them (`agents list -o wide`)'
json\t''"
complete -c fluxctl -n "__fish_fluxctl_using_subcommand apply" -l prune -d 'Also delete the tenant\'s states that the file does not declare (with diff: show those deletions)'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand apply" -l dry-run -d 'Show the plan and change nothing'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand apply" -s w -l wait -d 'Wait until every target is compliant; exit 1 if one fails or the timeout passes'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand apply" -l insecure -d 'Accept any server certificate (like curl -k)'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand apply" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand apply" -s V -l version -d 'Print version'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand diff" -s f -l filename -d 'State file (`-` reads stdin)' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand diff" -l server -d 'Control-plane URL (overrides the context)' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand diff" -l token -d 'Bearer token (overrides the context; prefer FLUX_TOKEN or --token-file)' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand diff" -l token-file -d 'File holding the bearer token' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand diff" -l ca -d 'CA certificate (PEM) to trust' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand diff" -l context -d 'Context from the config file to use' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand diff" -l config -d 'Config file (default ~/.config/fluxforge/config.toml)' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand diff" -s o -l output -d 'Output format' -r -f -a "table\t''
wide\t'A table with more columns where a command has them (`agents list -o wide`)'
json\t''"
complete -c fluxctl -n "__fish_fluxctl_using_subcommand diff" -l prune -d 'Also delete the tenant\'s states that the file does not declare (with diff: show those deletions)'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand diff" -l insecure -d 'Accept any server certificate (like curl -k)'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand diff" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand diff" -s V -l version -d 'Print version'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand state; and not __fish_seen_subcommand_from resume help" -l server -d 'Control-plane URL (overrides the context)' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand state; and not __fish_seen_subcommand_from resume help" -l token -d 'Bearer token (overrides the context; prefer FLUX_TOKEN or --token-file)' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand state; and not __fish_seen_subcommand_from resume help" -l token-file -d 'File holding the bearer token' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand state; and not __fish_seen_subcommand_from resume help" -l ca -d 'CA certificate (PEM) to trust' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand state; and not __fish_seen_subcommand_from resume help" -l context -d 'Context from the config file to use' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand state; and not __fish_seen_subcommand_from resume help" -l config -d 'Config file (default ~/.config/fluxforge/config.toml)' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand state; and not __fish_seen_subcommand_from resume help" -s o -l output -d 'Output format' -r -f -a "table\t''
wide\t'A table with more columns where a command has them (`agents list -o wide`)'
json\t''"
complete -c fluxctl -n "__fish_fluxctl_using_subcommand state; and not __fish_seen_subcommand_from resume help" -l insecure -d 'Accept any server certificate (like curl -k)'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand state; and not __fish_seen_subcommand_from resume help" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand state; and not __fish_seen_subcommand_from resume help" -s V -l version -d 'Print version'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand state; and not __fish_seen_subcommand_from resume help" -f -a "resume" -d 'Resume the remediation a state\'s rollout halted (its failed repairs are forgiven)'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand state; and not __fish_seen_subcommand_from resume help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand state; and __fish_seen_subcommand_from resume" -l server -d 'Control-plane URL (overrides the context)' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand state; and __fish_seen_subcommand_from resume" -l token -d 'Bearer token (overrides the context; prefer FLUX_TOKEN or --token-file)' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand state; and __fish_seen_subcommand_from resume" -l token-file -d 'File holding the bearer token' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand state; and __fish_seen_subcommand_from resume" -l ca -d 'CA certificate (PEM) to trust' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand state; and __fish_seen_subcommand_from resume" -l context -d 'Context from the config file to use' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand state; and __fish_seen_subcommand_from resume" -l config -d 'Config file (default ~/.config/fluxforge/config.toml)' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand state; and __fish_seen_subcommand_from resume" -s o -l output -d 'Output format' -r -f -a "table\t''
wide\t'A table with more columns where a command has them (`agents list -o wide`)'
json\t''"
complete -c fluxctl -n "__fish_fluxctl_using_subcommand state; and __fish_seen_subcommand_from resume" -l insecure -d 'Accept any server certificate (like curl -k)'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand state; and __fish_seen_subcommand_from resume" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand state; and __fish_seen_subcommand_from resume" -s V -l version -d 'Print version'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand state; and __fish_seen_subcommand_from help" -f -a "resume" -d 'Resume the remediation a state\'s rollout halted (its failed repairs are forgiven)'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand state; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand get; and not __fish_seen_subcommand_from states help" -l server -d 'Control-plane URL (overrides the context)' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand get; and not __fish_seen_subcommand_from states help" -l token -d 'Bearer token (overrides the context; prefer FLUX_TOKEN or --token-file)' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand get; and not __fish_seen_subcommand_from states help" -l token-file -d 'File holding the bearer token' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand get; and not __fish_seen_subcommand_from states help" -l ca -d 'CA certificate (PEM) to trust' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand get; and not __fish_seen_subcommand_from states help" -l context -d 'Context from the config file to use' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand get; and not __fish_seen_subcommand_from states help" -l config -d 'Config file (default ~/.config/fluxforge/config.toml)' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand get; and not __fish_seen_subcommand_from states help" -s o -l output -d 'Output format' -r -f -a "table\t''
wide\t'A table with more columns where a command has them (`agents list -o wide`)'
json\t''"
complete -c fluxctl -n "__fish_fluxctl_using_subcommand get; and not __fish_seen_subcommand_from states help" -l insecure -d 'Accept any server certificate (like curl -k)'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand get; and not __fish_seen_subcommand_from states help" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand get; and not __fish_seen_subcommand_from states help" -s V -l version -d 'Print version'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand get; and not __fish_seen_subcommand_from states help" -f -a "states" -d 'Desired states with their targets\' status; with a name, the per-target detail'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand get; and not __fish_seen_subcommand_from states help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand get; and __fish_seen_subcommand_from states" -l server -d 'Control-plane URL (overrides the context)' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand get; and __fish_seen_subcommand_from states" -l token -d 'Bearer token (overrides the context; prefer FLUX_TOKEN or --token-file)' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand get; and __fish_seen_subcommand_from states" -l token-file -d 'File holding the bearer token' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand get; and __fish_seen_subcommand_from states" -l ca -d 'CA certificate (PEM) to trust' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand get; and __fish_seen_subcommand_from states" -l context -d 'Context from the config file to use' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand get; and __fish_seen_subcommand_from states" -l config -d 'Config file (default ~/.config/fluxforge/config.toml)' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand get; and __fish_seen_subcommand_from states" -s o -l output -d 'Output format' -r -f -a "table\t''
wide\t'A table with more columns where a command has them (`agents list -o wide`)'
json\t''"
complete -c fluxctl -n "__fish_fluxctl_using_subcommand get; and __fish_seen_subcommand_from states" -s w -l watch -d 'Keep it current: print it again whenever a state event arrives (with -o json, print each state event as one JSON line instead)'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand get; and __fish_seen_subcommand_from states" -l insecure -d 'Accept any server certificate (like curl -k)'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand get; and __fish_seen_subcommand_from states" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand get; and __fish_seen_subcommand_from states" -s V -l version -d 'Print version'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand get; and __fish_seen_subcommand_from help" -f -a "states" -d 'Desired states with their targets\' status; with a name, the per-target detail'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand get; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand delete; and not __fish_seen_subcommand_from state help" -l server -d 'Control-plane URL (overrides the context)' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand delete; and not __fish_seen_subcommand_from state help" -l token -d 'Bearer token (overrides the context; prefer FLUX_TOKEN or --token-file)' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand delete; and not __fish_seen_subcommand_from state help" -l token-file -d 'File holding the bearer token' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand delete; and not __fish_seen_subcommand_from state help" -l ca -d 'CA certificate (PEM) to trust' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand delete; and not __fish_seen_subcommand_from state help" -l context -d 'Context from the config file to use' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand delete; and not __fish_seen_subcommand_from state help" -l config -d 'Config file (default ~/.config/fluxforge/config.toml)' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand delete; and not __fish_seen_subcommand_from state help" -s o -l output -d 'Output format' -r -f -a "table\t''
wide\t'A table with more columns where a command has them (`agents list -o wide`)'
json\t''"
complete -c fluxctl -n "__fish_fluxctl_using_subcommand delete; and not __fish_seen_subcommand_from state help" -l insecure -d 'Accept any server certificate (like curl -k)'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand delete; and not __fish_seen_subcommand_from state help" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand delete; and not __fish_seen_subcommand_from state help" -s V -l version -d 'Print version'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand delete; and not __fish_seen_subcommand_from state help" -f -a "state" -d 'Delete a desired state (its agents are left as they are)'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand delete; and not __fish_seen_subcommand_from state help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand delete; and __fish_seen_subcommand_from state" -l if-version -d 'Delete only if the state is still at this version' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand delete; and __fish_seen_subcommand_from state" -l server -d 'Control-plane URL (overrides the context)' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand delete; and __fish_seen_subcommand_from state" -l token -d 'Bearer token (overrides the context; prefer FLUX_TOKEN or --token-file)' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand delete; and __fish_seen_subcommand_from state" -l token-file -d 'File holding the bearer token' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand delete; and __fish_seen_subcommand_from state" -l ca -d 'CA certificate (PEM) to trust' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand delete; and __fish_seen_subcommand_from state" -l context -d 'Context from the config file to use' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand delete; and __fish_seen_subcommand_from state" -l config -d 'Config file (default ~/.config/fluxforge/config.toml)' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand delete; and __fish_seen_subcommand_from state" -s o -l output -d 'Output format' -r -f -a "table\t''
wide\t'A table with more columns where a command has them (`agents list -o wide`)'
json\t''"
complete -c fluxctl -n "__fish_fluxctl_using_subcommand delete; and __fish_seen_subcommand_from state" -l insecure -d 'Accept any server certificate (like curl -k)'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand delete; and __fish_seen_subcommand_from state" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand delete; and __fish_seen_subcommand_from state" -s V -l version -d 'Print version'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand delete; and __fish_seen_subcommand_from help" -f -a "state" -d 'Delete a desired state (its agents are left as they are)'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand delete; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand tenants; and not __fish_seen_subcommand_from list create quota help" -l server -d 'Control-plane URL (overrides the context)' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand tenants; and not __fish_seen_subcommand_from list create quota help" -l token -d 'Bearer token (overrides the context; prefer FLUX_TOKEN or --token-file)' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand tenants; and not __fish_seen_subcommand_from list create quota help" -l token-file -d 'File holding the bearer token' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand tenants; and not __fish_seen_subcommand_from list create quota help" -l ca -d 'CA certificate (PEM) to trust' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand tenants; and not __fish_seen_subcommand_from list create quota help" -l context -d 'Context from the config file to use' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand tenants; and not __fish_seen_subcommand_from list create quota help" -l config -d 'Config file (default ~/.config/fluxforge/config.toml)' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand tenants; and not __fish_seen_subcommand_from list create quota help" -s o -l output -d 'Output format' -r -f -a "table\t''
wide\t'A table with more columns where a command has them (`agents list -o wide`)'
json\t''"
complete -c fluxctl -n "__fish_fluxctl_using_subcommand tenants; and not __fish_seen_subcommand_from list create quota help" -l insecure -d 'Accept any server certificate (like curl -k)'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand tenants; and not __fish_seen_subcommand_from list create quota help" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand tenants; and not __fish_seen_subcommand_from list create quota help" -s V -l version -d 'Print version'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand tenants; and not __fish_seen_subcommand_from list create quota help" -f -a "list" -d 'Tenants with queued and running jobs, agents, states and quotas (admins)'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand tenants; and not __fish_seen_subcommand_from list create quota help" -f -a "create" -d 'Create a tenant (admins of tenant default) and print a first admin token for it'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand tenants; and not __fish_seen_subcommand_from list create quota help" -f -a "quota" -d 'Show or set a tenant\'s quota'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand tenants; and not __fish_seen_subcommand_from list create quota help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand tenants; and __fish_seen_subcommand_from list" -l server -d 'Control-plane URL (overrides the context)' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand tenants; and __fish_seen_subcommand_from list" -l token -d 'Bearer token (overrides the context; prefer FLUX_TOKEN or --token-file)' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand tenants; and __fish_seen_subcommand_from list" -l token-file -d 'File holding the bearer token' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand tenants; and __fish_seen_subcommand_from list" -l ca -d 'CA certificate (PEM) to trust' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand tenants; and __fish_seen_subcommand_from list" -l context -d 'Context from the config file to use' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand tenants; and __fish_seen_subcommand_from list" -l config -d 'Config file (default ~/.config/fluxforge/config.toml)' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand tenants; and __fish_seen_subcommand_from list" -s o -l output -d 'Output format' -r -f -a "table\t''
wide\t'A table with more columns where a command has them (`agents list -o wide`)'
json\t''"
complete -c fluxctl -n "__fish_fluxctl_using_subcommand tenants; and __fish_seen_subcommand_from list" -l insecure -d 'Accept any server certificate (like curl -k)'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand tenants; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand tenants; and __fish_seen_subcommand_from list" -s V -l version -d 'Print version'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand tenants; and __fish_seen_subcommand_from create" -l max-queued -d 'Jobs waiting for an agent' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand tenants; and __fish_seen_subcommand_from create" -l max-running -d 'Attempts assigned or running at once' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand tenants; and __fish_seen_subcommand_from create" -l submit-rate -d 'Sustained submissions per second (per fluxd node)' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand tenants; and __fish_seen_subcommand_from create" -l max-states -d 'Desired states the tenant may hold' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand tenants; and __fish_seen_subcommand_from create" -l token-ttl -d 'Lifetime of the admin token' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand tenants; and __fish_seen_subcommand_from create" -l server -d 'Control-plane URL (overrides the context)' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand tenants; and __fish_seen_subcommand_from create" -l token -d 'Bearer token (overrides the context; prefer FLUX_TOKEN or --token-file)' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand tenants; and __fish_seen_subcommand_from create" -l token-file -d 'File holding the bearer token' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand tenants; and __fish_seen_subcommand_from create" -l ca -d 'CA certificate (PEM) to trust' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand tenants; and __fish_seen_subcommand_from create" -l context -d 'Context from the config file to use' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand tenants; and __fish_seen_subcommand_from create" -l config -d 'Config file (default ~/.config/fluxforge/config.toml)' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand tenants; and __fish_seen_subcommand_from create" -s o -l output -d 'Output format' -r -f -a "table\t''
wide\t'A table with more columns where a command has them (`agents list -o wide`)'
json\t''"
complete -c fluxctl -n "__fish_fluxctl_using_subcommand tenants; and __fish_seen_subcommand_from create" -l insecure -d 'Accept any server certificate (like curl -k)'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand tenants; and __fish_seen_subcommand_from create" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand tenants; and __fish_seen_subcommand_from create" -s V -l version -d 'Print version'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand tenants; and __fish_seen_subcommand_from quota" -l server -d 'Control-plane URL (overrides the context)' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand tenants; and __fish_seen_subcommand_from quota" -l token -d 'Bearer token (overrides the context; prefer FLUX_TOKEN or --token-file)' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand tenants; and __fish_seen_subcommand_from quota" -l token-file -d 'File holding the bearer token' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand tenants; and __fish_seen_subcommand_from quota" -l ca -d 'CA certificate (PEM) to trust' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand tenants; and __fish_seen_subcommand_from quota" -l context -d 'Context from the config file to use' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand tenants; and __fish_seen_subcommand_from quota" -l config -d 'Config file (default ~/.config/fluxforge/config.toml)' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand tenants; and __fish_seen_subcommand_from quota" -s o -l output -d 'Output format' -r -f -a "table\t''
wide\t'A table with more columns where a command has them (`agents list -o wide`)'
json\t''"
complete -c fluxctl -n "__fish_fluxctl_using_subcommand tenants; and __fish_seen_subcommand_from quota" -l insecure -d 'Accept any server certificate (like curl -k)'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand tenants; and __fish_seen_subcommand_from quota" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand tenants; and __fish_seen_subcommand_from quota" -s V -l version -d 'Print version'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand tenants; and __fish_seen_subcommand_from quota" -f -a "get"
complete -c fluxctl -n "__fish_fluxctl_using_subcommand tenants; and __fish_seen_subcommand_from quota" -f -a "set" -d 'Replace a tenant\'s quota (admins of tenant default); a limit left out is unlimited'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand tenants; and __fish_seen_subcommand_from quota" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand tenants; and __fish_seen_subcommand_from help" -f -a "list" -d 'Tenants with queued and running jobs, agents, states and quotas (admins)'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand tenants; and __fish_seen_subcommand_from help" -f -a "create" -d 'Create a tenant (admins of tenant default) and print a first admin token for it'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand tenants; and __fish_seen_subcommand_from help" -f -a "quota" -d 'Show or set a tenant\'s quota'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand tenants; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand events" -l type -d 'Only these types (comma-separated; `job.*` matches every job event)' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand events" -l since -d 'Only events after this id (REVISION or REVISION.INDEX)' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand events" -l object -d 'Only events about this object (job id, node id, STATE/NODE)' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand events" -l selector -d 'Only events about agents matching this selector' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand events" -l server -d 'Control-plane URL (overrides the context)' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand events" -l token -d 'Bearer token (overrides the context; prefer FLUX_TOKEN or --token-file)' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand events" -l token-file -d 'File holding the bearer token' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand events" -l ca -d 'CA certificate (PEM) to trust' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand events" -l context -d 'Context from the config file to use' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand events" -l config -d 'Config file (default ~/.config/fluxforge/config.toml)' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand events" -s o -l output -d 'Output format' -r -f -a "table\t''
wide\t'A table with more columns where a command has them (`agents list -o wide`)'
json\t''"
complete -c fluxctl -n "__fish_fluxctl_using_subcommand events" -s f -l follow -d 'Follow: keep printing events as they happen'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand events" -l insecure -d 'Accept any server certificate (like curl -k)'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand events" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand events" -s V -l version -d 'Print version'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand webhooks; and not __fish_seen_subcommand_from create list get delete test help" -l server -d 'Control-plane URL (overrides the context)' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand webhooks; and not __fish_seen_subcommand_from create list get delete test help" -l token -d 'Bearer token (overrides the context; prefer FLUX_TOKEN or --token-file)' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand webhooks; and not __fish_seen_subcommand_from create list get delete test help" -l token-file -d 'File holding the bearer token' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand webhooks; and not __fish_seen_subcommand_from create list get delete test help" -l ca -d 'CA certificate (PEM) to trust' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand webhooks; and not __fish_seen_subcommand_from create list get delete test help" -l context -d 'Context from the config file to use' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand webhooks; and not __fish_seen_subcommand_from create list get delete test help" -l config -d 'Config file (default ~/.config/fluxforge/config.toml)' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand webhooks; and not __fish_seen_subcommand_from create list get delete test help" -s o -l output -d 'Output format' -r -f -a "table\t''
wide\t'A table with more columns where a command has them (`agents list -o wide`)'
json\t''"
complete -c fluxctl -n "__fish_fluxctl_using_subcommand webhooks; and not __fish_seen_subcommand_from create list get delete test help" -l insecure -d 'Accept any server certificate (like curl -k)'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand webhooks; and not __fish_seen_subcommand_from create list get delete test help" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand webhooks; and not __fish_seen_subcommand_from create list get delete test help" -s V -l version -d 'Print version'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand webhooks; and not __fish_seen_subcommand_from create list get delete test help" -f -a "create" -d 'Create a webhook: matching events are POSTed to URL, signed, at least once'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand webhooks; and not __fish_seen_subcommand_from create list get delete test help" -f -a "list" -d 'List the tenant\'s webhooks'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand webhooks; and not __fish_seen_subcommand_from create list get delete test help" -f -a "get" -d 'Show a webhook and its recent deliveries'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand webhooks; and not __fish_seen_subcommand_from create list get delete test help" -f -a "delete" -d 'Delete a webhook (its cursor and delivery records with it)'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand webhooks; and not __fish_seen_subcommand_from create list get delete test help" -f -a "test" -d 'Send a test delivery now'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand webhooks; and not __fish_seen_subcommand_from create list get delete test help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand webhooks; and __fish_seen_subcommand_from create" -l url -d 'The receiver (https://; http:// only with --allow-http)' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand webhooks; and __fish_seen_subcommand_from create" -l events -d 'Event types (comma-separated, `job.*` wildcards); default every type' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand webhooks; and __fish_seen_subcommand_from create" -l filter -d 'Only events about agents matching this selector' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand webhooks; and __fish_seen_subcommand_from create" -l secret-file -d 'File holding the signing secret (default: generated and printed once)' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand webhooks; and __fish_seen_subcommand_from create" -l receiver-ca -d 'CA certificates (PEM) the receiver\'s certificate must chain to (`--ca` is the global flag for the control plane\'s own CA)' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand webhooks; and __fish_seen_subcommand_from create" -l max-attempts -d 'Attempts per event before it is recorded failed (1..=20)' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand webhooks; and __fish_seen_subcommand_from create" -l server -d 'Control-plane URL (overrides the context)' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand webhooks; and __fish_seen_subcommand_from create" -l token -d 'Bearer token (overrides the context; prefer FLUX_TOKEN or --token-file)' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand webhooks; and __fish_seen_subcommand_from create" -l token-file -d 'File holding the bearer token' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand webhooks; and __fish_seen_subcommand_from create" -l ca -d 'CA certificate (PEM) to trust' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand webhooks; and __fish_seen_subcommand_from create" -l context -d 'Context from the config file to use' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand webhooks; and __fish_seen_subcommand_from create" -l config -d 'Config file (default ~/.config/fluxforge/config.toml)' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand webhooks; and __fish_seen_subcommand_from create" -s o -l output -d 'Output format' -r -f -a "table\t''
wide\t'A table with more columns where a command has them (`agents list -o wide`)'
json\t''"
complete -c fluxctl -n "__fish_fluxctl_using_subcommand webhooks; and __fish_seen_subcommand_from create" -l allow-http -d 'Accept a plain http:// URL'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand webhooks; and __fish_seen_subcommand_from create" -l insecure -d 'Accept any server certificate (like curl -k)'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand webhooks; and __fish_seen_subcommand_from create" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand webhooks; and __fish_seen_subcommand_from create" -s V -l version -d 'Print version'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand webhooks; and __fish_seen_subcommand_from list" -l server -d 'Control-plane URL (overrides the context)' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand webhooks; and __fish_seen_subcommand_from list" -l token -d 'Bearer token (overrides the context; prefer FLUX_TOKEN or --token-file)' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand webhooks; and __fish_seen_subcommand_from list" -l token-file -d 'File holding the bearer token' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand webhooks; and __fish_seen_subcommand_from list" -l ca -d 'CA certificate (PEM) to trust' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand webhooks; and __fish_seen_subcommand_from list" -l context -d 'Context from the config file to use' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand webhooks; and __fish_seen_subcommand_from list" -l config -d 'Config file (default ~/.config/fluxforge/config.toml)' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand webhooks; and __fish_seen_subcommand_from list" -s o -l output -d 'Output format' -r -f -a "table\t''
wide\t'A table with more columns where a command has them (`agents list -o wide`)'
json\t''"
complete -c fluxctl -n "__fish_fluxctl_using_subcommand webhooks; and __fish_seen_subcommand_from list" -l insecure -d 'Accept any server certificate (like curl -k)'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand webhooks; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand webhooks; and __fish_seen_subcommand_from list" -s V -l version -d 'Print version'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand webhooks; and __fish_seen_subcommand_from get" -l server -d 'Control-plane URL (overrides the context)' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand webhooks; and __fish_seen_subcommand_from get" -l token -d 'Bearer token (overrides the context; prefer FLUX_TOKEN or --token-file)' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand webhooks; and __fish_seen_subcommand_from get" -l token-file -d 'File holding the bearer token' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand webhooks; and __fish_seen_subcommand_from get" -l ca -d 'CA certificate (PEM) to trust' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand webhooks; and __fish_seen_subcommand_from get" -l context -d 'Context from the config file to use' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand webhooks; and __fish_seen_subcommand_from get" -l config -d 'Config file (default ~/.config/fluxforge/config.toml)' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand webhooks; and __fish_seen_subcommand_from get" -s o -l output -d 'Output format' -r -f -a "table\t''
wide\t'A table with more columns where a command has them (`agents list -o wide`)'
json\t''"
complete -c fluxctl -n "__fish_fluxctl_using_subcommand webhooks; and __fish_seen_subcommand_from get" -l insecure -d 'Accept any server certificate (like curl -k)'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand webhooks; and __fish_seen_subcommand_from get" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand webhooks; and __fish_seen_subcommand_from get" -s V -l version -d 'Print version'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand webhooks; and __fish_seen_subcommand_from delete" -l server -d 'Control-plane URL (overrides the context)' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand webhooks; and __fish_seen_subcommand_from delete" -l token -d 'Bearer token (overrides the context; prefer FLUX_TOKEN or --token-file)' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand webhooks; and __fish_seen_subcommand_from delete" -l token-file -d 'File holding the bearer token' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand webhooks; and __fish_seen_subcommand_from delete" -l ca -d 'CA certificate (PEM) to trust' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand webhooks; and __fish_seen_subcommand_from delete" -l context -d 'Context from the config file to use' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand webhooks; and __fish_seen_subcommand_from delete" -l config -d 'Config file (default ~/.config/fluxforge/config.toml)' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand webhooks; and __fish_seen_subcommand_from delete" -s o -l output -d 'Output format' -r -f -a "table\t''
wide\t'A table with more columns where a command has them (`agents list -o wide`)'
json\t''"
complete -c fluxctl -n "__fish_fluxctl_using_subcommand webhooks; and __fish_seen_subcommand_from delete" -l insecure -d 'Accept any server certificate (like curl -k)'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand webhooks; and __fish_seen_subcommand_from delete" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand webhooks; and __fish_seen_subcommand_from delete" -s V -l version -d 'Print version'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand webhooks; and __fish_seen_subcommand_from test" -l server -d 'Control-plane URL (overrides the context)' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand webhooks; and __fish_seen_subcommand_from test" -l token -d 'Bearer token (overrides the context; prefer FLUX_TOKEN or --token-file)' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand webhooks; and __fish_seen_subcommand_from test" -l token-file -d 'File holding the bearer token' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand webhooks; and __fish_seen_subcommand_from test" -l ca -d 'CA certificate (PEM) to trust' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand webhooks; and __fish_seen_subcommand_from test" -l context -d 'Context from the config file to use' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand webhooks; and __fish_seen_subcommand_from test" -l config -d 'Config file (default ~/.config/fluxforge/config.toml)' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand webhooks; and __fish_seen_subcommand_from test" -s o -l output -d 'Output format' -r -f -a "table\t''
wide\t'A table with more columns where a command has them (`agents list -o wide`)'
json\t''"
complete -c fluxctl -n "__fish_fluxctl_using_subcommand webhooks; and __fish_seen_subcommand_from test" -l insecure -d 'Accept any server certificate (like curl -k)'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand webhooks; and __fish_seen_subcommand_from test" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand webhooks; and __fish_seen_subcommand_from test" -s V -l version -d 'Print version'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand webhooks; and __fish_seen_subcommand_from help" -f -a "create" -d 'Create a webhook: matching events are POSTed to URL, signed, at least once'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand webhooks; and __fish_seen_subcommand_from help" -f -a "list" -d 'List the tenant\'s webhooks'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand webhooks; and __fish_seen_subcommand_from help" -f -a "get" -d 'Show a webhook and its recent deliveries'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand webhooks; and __fish_seen_subcommand_from help" -f -a "delete" -d 'Delete a webhook (its cursor and delivery records with it)'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand webhooks; and __fish_seen_subcommand_from help" -f -a "test" -d 'Send a test delivery now'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand webhooks; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand audit; and not __fish_seen_subcommand_from log verify export help" -l server -d 'Control-plane URL (overrides the context)' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand audit; and not __fish_seen_subcommand_from log verify export help" -l token -d 'Bearer token (overrides the context; prefer FLUX_TOKEN or --token-file)' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand audit; and not __fish_seen_subcommand_from log verify export help" -l token-file -d 'File holding the bearer token' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand audit; and not __fish_seen_subcommand_from log verify export help" -l ca -d 'CA certificate (PEM) to trust' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand audit; and not __fish_seen_subcommand_from log verify export help" -l context -d 'Context from the config file to use' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand audit; and not __fish_seen_subcommand_from log verify export help" -l config -d 'Config file (default ~/.config/fluxforge/config.toml)' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand audit; and not __fish_seen_subcommand_from log verify export help" -s o -l output -d 'Output format' -r -f -a "table\t''
wide\t'A table with more columns where a command has them (`agents list -o wide`)'
json\t''"
complete -c fluxctl -n "__fish_fluxctl_using_subcommand audit; and not __fish_seen_subcommand_from log verify export help" -l insecure -d 'Accept any server certificate (like curl -k)'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand audit; and not __fish_seen_subcommand_from log verify export help" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand audit; and not __fish_seen_subcommand_from log verify export help" -s V -l version -d 'Print version'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand audit; and not __fish_seen_subcommand_from log verify export help" -f -a "log" -d 'Print audit records, oldest first (a page; --all follows every page)'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand audit; and not __fish_seen_subcommand_from log verify export help" -f -a "verify" -d 'Walk the hash chain; exit 1 if a record was altered, removed or cut off. With --file, check an export file instead; exit 1 if it was edited'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand audit; and not __fish_seen_subcommand_from log verify export help" -f -a "export" -d 'Write the records made before DATE (after the last export) and a signed checkpoint to FILE; once exported, `fluxd --audit-retention` may prune them'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand audit; and not __fish_seen_subcommand_from log verify export help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand audit; and __fish_seen_subcommand_from log" -l after -d 'Only records after this sequence number' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand audit; and __fish_seen_subcommand_from log" -l limit -d 'Records per page (1..=10000)' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand audit; and __fish_seen_subcommand_from log" -l tenant -d 'Another tenant (admins of tenant default)' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand audit; and __fish_seen_subcommand_from log" -l server -d 'Control-plane URL (overrides the context)' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand audit; and __fish_seen_subcommand_from log" -l token -d 'Bearer token (overrides the context; prefer FLUX_TOKEN or --token-file)' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand audit; and __fish_seen_subcommand_from log" -l token-file -d 'File holding the bearer token' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand audit; and __fish_seen_subcommand_from log" -l ca -d 'CA certificate (PEM) to trust' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand audit; and __fish_seen_subcommand_from log" -l context -d 'Context from the config file to use' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand audit; and __fish_seen_subcommand_from log" -l config -d 'Config file (default ~/.config/fluxforge/config.toml)' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand audit; and __fish_seen_subcommand_from log" -s o -l output -d 'Output format' -r -f -a "table\t''
wide\t'A table with more columns where a command has them (`agents list -o wide`)'
json\t''"
complete -c fluxctl -n "__fish_fluxctl_using_subcommand audit; and __fish_seen_subcommand_from log" -l all -d 'Every record after --after, page by page'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand audit; and __fish_seen_subcommand_from log" -l insecure -d 'Accept any server certificate (like curl -k)'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand audit; and __fish_seen_subcommand_from log" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand audit; and __fish_seen_subcommand_from log" -s V -l version -d 'Print version'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand audit; and __fish_seen_subcommand_from verify" -l tenant -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand audit; and __fish_seen_subcommand_from verify" -l file -d 'An export file written by `fluxctl audit export`' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand audit; and __fish_seen_subcommand_from verify" -l server -d 'Control-plane URL (overrides the context)' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand audit; and __fish_seen_subcommand_from verify" -l token -d 'Bearer token (overrides the context; prefer FLUX_TOKEN or --token-file)' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand audit; and __fish_seen_subcommand_from verify" -l token-file -d 'File holding the bearer token' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand audit; and __fish_seen_subcommand_from verify" -l ca -d 'CA certificate (PEM) to trust' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand audit; and __fish_seen_subcommand_from verify" -l context -d 'Context from the config file to use' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand audit; and __fish_seen_subcommand_from verify" -l config -d 'Config file (default ~/.config/fluxforge/config.toml)' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand audit; and __fish_seen_subcommand_from verify" -s o -l output -d 'Output format' -r -f -a "table\t''
wide\t'A table with more columns where a command has them (`agents list -o wide`)'
json\t''"
complete -c fluxctl -n "__fish_fluxctl_using_subcommand audit; and __fish_seen_subcommand_from verify" -l all -d 'Every tenant (admins of tenant default)'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand audit; and __fish_seen_subcommand_from verify" -l insecure -d 'Accept any server certificate (like curl -k)'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand audit; and __fish_seen_subcommand_from verify" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand audit; and __fish_seen_subcommand_from verify" -s V -l version -d 'Print version'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand audit; and __fish_seen_subcommand_from export" -l before -d 'A date (2026-11-01, UTC), a time (RFC 3339) or an age (30d: made more than 30 days ago)' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand audit; and __fish_seen_subcommand_from export" -l after -d 'Start after this record instead of after the last export' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand audit; and __fish_seen_subcommand_from export" -l tenant -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand audit; and __fish_seen_subcommand_from export" -l server -d 'Control-plane URL (overrides the context)' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand audit; and __fish_seen_subcommand_from export" -l token -d 'Bearer token (overrides the context; prefer FLUX_TOKEN or --token-file)' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand audit; and __fish_seen_subcommand_from export" -l token-file -d 'File holding the bearer token' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand audit; and __fish_seen_subcommand_from export" -l ca -d 'CA certificate (PEM) to trust' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand audit; and __fish_seen_subcommand_from export" -l context -d 'Context from the config file to use' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand audit; and __fish_seen_subcommand_from export" -l config -d 'Config file (default ~/.config/fluxforge/config.toml)' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand audit; and __fish_seen_subcommand_from export" -s o -l output -d 'Output format' -r -f -a "table\t''
wide\t'A table with more columns where a command has them (`agents list -o wide`)'
json\t''"
complete -c fluxctl -n "__fish_fluxctl_using_subcommand audit; and __fish_seen_subcommand_from export" -l insecure -d 'Accept any server certificate (like curl -k)'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand audit; and __fish_seen_subcommand_from export" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand audit; and __fish_seen_subcommand_from export" -s V -l version -d 'Print version'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand audit; and __fish_seen_subcommand_from help" -f -a "log" -d 'Print audit records, oldest first (a page; --all follows every page)'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand audit; and __fish_seen_subcommand_from help" -f -a "verify" -d 'Walk the hash chain; exit 1 if a record was altered, removed or cut off. With --file, check an export file instead; exit 1 if it was edited'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand audit; and __fish_seen_subcommand_from help" -f -a "export" -d 'Write the records made before DATE (after the last export) and a signed checkpoint to FILE; once exported, `fluxd --audit-retention` may prune them'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand audit; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand backup; and not __fish_seen_subcommand_from create verify restore help" -l server -d 'Control-plane URL (overrides the context)' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand backup; and not __fish_seen_subcommand_from create verify restore help" -l token -d 'Bearer token (overrides the context; prefer FLUX_TOKEN or --token-file)' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand backup; and not __fish_seen_subcommand_from create verify restore help" -l token-file -d 'File holding the bearer token' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand backup; and not __fish_seen_subcommand_from create verify restore help" -l ca -d 'CA certificate (PEM) to trust' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand backup; and not __fish_seen_subcommand_from create verify restore help" -l context -d 'Context from the config file to use' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand backup; and not __fish_seen_subcommand_from create verify restore help" -l config -d 'Config file (default ~/.config/fluxforge/config.toml)' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand backup; and not __fish_seen_subcommand_from create verify restore help" -s o -l output -d 'Output format' -r -f -a "table\t''
wide\t'A table with more columns where a command has them (`agents list -o wide`)'
json\t''"
complete -c fluxctl -n "__fish_fluxctl_using_subcommand backup; and not __fish_seen_subcommand_from create verify restore help" -l insecure -d 'Accept any server certificate (like curl -k)'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand backup; and not __fish_seen_subcommand_from create verify restore help" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand backup; and not __fish_seen_subcommand_from create verify restore help" -s V -l version -d 'Print version'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand backup; and not __fish_seen_subcommand_from create verify restore help" -f -a "create" -d 'Take a consistent snapshot of every tenant and write it to FILE (`-` for stdout). The file is owner-only (0600), written through a new temporary file beside it'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand backup; and not __fish_seen_subcommand_from create verify restore help" -f -a "verify" -d 'Authenticate a backup file: format, every line, object count, checksum and the MAC under the cluster\'s backup key. The server checks it, unless --signing-key names the signing key file of the cluster that took it (then nothing is sent anywhere)'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand backup; and not __fish_seen_subcommand_from create verify restore help" -f -a "restore" -d 'Restore a backup (authenticated first). Refuses a store that holds objects unless --force, which replaces everything. Afterwards the fencing epoch is above every earlier one'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand backup; and not __fish_seen_subcommand_from create verify restore help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand backup; and __fish_seen_subcommand_from create" -l server -d 'Control-plane URL (overrides the context)' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand backup; and __fish_seen_subcommand_from create" -l token -d 'Bearer token (overrides the context; prefer FLUX_TOKEN or --token-file)' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand backup; and __fish_seen_subcommand_from create" -l token-file -d 'File holding the bearer token' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand backup; and __fish_seen_subcommand_from create" -l ca -d 'CA certificate (PEM) to trust' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand backup; and __fish_seen_subcommand_from create" -l context -d 'Context from the config file to use' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand backup; and __fish_seen_subcommand_from create" -l config -d 'Config file (default ~/.config/fluxforge/config.toml)' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand backup; and __fish_seen_subcommand_from create" -s o -l output -d 'Output format' -r -f -a "table\t''
wide\t'A table with more columns where a command has them (`agents list -o wide`)'
json\t''"
complete -c fluxctl -n "__fish_fluxctl_using_subcommand backup; and __fish_seen_subcommand_from create" -l insecure -d 'Accept any server certificate (like curl -k)'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand backup; and __fish_seen_subcommand_from create" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand backup; and __fish_seen_subcommand_from create" -s V -l version -d 'Print version'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand backup; and __fish_seen_subcommand_from verify" -l signing-key -d 'Check offline with this signing key file (`signing-key.json` of the cluster that took the backup)' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand backup; and __fish_seen_subcommand_from verify" -l backup-key -d 'Have the server check a backup of another cluster with that cluster\'s signing key file (only the backup key derived from it is sent)' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand backup; and __fish_seen_subcommand_from verify" -l server -d 'Control-plane URL (overrides the context)' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand backup; and __fish_seen_subcommand_from verify" -l token -d 'Bearer token (overrides the context; prefer FLUX_TOKEN or --token-file)' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand backup; and __fish_seen_subcommand_from verify" -l token-file -d 'File holding the bearer token' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand backup; and __fish_seen_subcommand_from verify" -l ca -d 'CA certificate (PEM) to trust' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand backup; and __fish_seen_subcommand_from verify" -l context -d 'Context from the config file to use' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand backup; and __fish_seen_subcommand_from verify" -l config -d 'Config file (default ~/.config/fluxforge/config.toml)' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand backup; and __fish_seen_subcommand_from verify" -s o -l output -d 'Output format' -r -f -a "table\t''
wide\t'A table with more columns where a command has them (`agents list -o wide`)'
json\t''"
complete -c fluxctl -n "__fish_fluxctl_using_subcommand backup; and __fish_seen_subcommand_from verify" -l insecure -d 'Accept any server certificate (like curl -k)'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand backup; and __fish_seen_subcommand_from verify" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand backup; and __fish_seen_subcommand_from verify" -s V -l version -d 'Print version'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand backup; and __fish_seen_subcommand_from restore" -l backup-key -d 'The backup was taken by another cluster: its signing key file, whose derived backup key (never the signing key itself) is sent so that the server accepts the file' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand backup; and __fish_seen_subcommand_from restore" -l server -d 'Control-plane URL (overrides the context)' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand backup; and __fish_seen_subcommand_from restore" -l token -d 'Bearer token (overrides the context; prefer FLUX_TOKEN or --token-file)' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand backup; and __fish_seen_subcommand_from restore" -l token-file -d 'File holding the bearer token' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand backup; and __fish_seen_subcommand_from restore" -l ca -d 'CA certificate (PEM) to trust' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand backup; and __fish_seen_subcommand_from restore" -l context -d 'Context from the config file to use' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand backup; and __fish_seen_subcommand_from restore" -l config -d 'Config file (default ~/.config/fluxforge/config.toml)' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand backup; and __fish_seen_subcommand_from restore" -s o -l output -d 'Output format' -r -f -a "table\t''
wide\t'A table with more columns where a command has them (`agents list -o wide`)'
json\t''"
complete -c fluxctl -n "__fish_fluxctl_using_subcommand backup; and __fish_seen_subcommand_from restore" -l force
complete -c fluxctl -n "__fish_fluxctl_using_subcommand backup; and __fish_seen_subcommand_from restore" -l insecure -d 'Accept any server certificate (like curl -k)'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand backup; and __fish_seen_subcommand_from restore" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand backup; and __fish_seen_subcommand_from restore" -s V -l version -d 'Print version'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand backup; and __fish_seen_subcommand_from help" -f -a "create" -d 'Take a consistent snapshot of every tenant and write it to FILE (`-` for stdout). The file is owner-only (0600), written through a new temporary file beside it'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand backup; and __fish_seen_subcommand_from help" -f -a "verify" -d 'Authenticate a backup file: format, every line, object count, checksum and the MAC under the cluster\'s backup key. The server checks it, unless --signing-key names the signing key file of the cluster that took it (then nothing is sent anywhere)'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand backup; and __fish_seen_subcommand_from help" -f -a "restore" -d 'Restore a backup (authenticated first). Refuses a store that holds objects unless --force, which replaces everything. Afterwards the fencing epoch is above every earlier one'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand backup; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand status" -l server -d 'Control-plane URL (overrides the context)' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand status" -l token -d 'Bearer token (overrides the context; prefer FLUX_TOKEN or --token-file)' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand status" -l token-file -d 'File holding the bearer token' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand status" -l ca -d 'CA certificate (PEM) to trust' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand status" -l context -d 'Context from the config file to use' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand status" -l config -d 'Config file (default ~/.config/fluxforge/config.toml)' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand status" -s o -l output -d 'Output format' -r -f -a "table\t''
wide\t'A table with more columns where a command has them (`agents list -o wide`)'
json\t''"
complete -c fluxctl -n "__fish_fluxctl_using_subcommand status" -l insecure -d 'Accept any server certificate (like curl -k)'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand status" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand status" -s V -l version -d 'Print version'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand whoami" -l server -d 'Control-plane URL (overrides the context)' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand whoami" -l token -d 'Bearer token (overrides the context; prefer FLUX_TOKEN or --token-file)' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand whoami" -l token-file -d 'File holding the bearer token' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand whoami" -l ca -d 'CA certificate (PEM) to trust' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand whoami" -l context -d 'Context from the config file to use' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand whoami" -l config -d 'Config file (default ~/.config/fluxforge/config.toml)' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand whoami" -s o -l output -d 'Output format' -r -f -a "table\t''
wide\t'A table with more columns where a command has them (`agents list -o wide`)'
json\t''"
complete -c fluxctl -n "__fish_fluxctl_using_subcommand whoami" -l insecure -d 'Accept any server certificate (like curl -k)'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand whoami" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand whoami" -s V -l version -d 'Print version'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand config; and not __fish_seen_subcommand_from set-context use-context get-contexts help" -l server -d 'Control-plane URL (overrides the context)' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand config; and not __fish_seen_subcommand_from set-context use-context get-contexts help" -l token -d 'Bearer token (overrides the context; prefer FLUX_TOKEN or --token-file)' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand config; and not __fish_seen_subcommand_from set-context use-context get-contexts help" -l token-file -d 'File holding the bearer token' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand config; and not __fish_seen_subcommand_from set-context use-context get-contexts help" -l ca -d 'CA certificate (PEM) to trust' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand config; and not __fish_seen_subcommand_from set-context use-context get-contexts help" -l context -d 'Context from the config file to use' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand config; and not __fish_seen_subcommand_from set-context use-context get-contexts help" -l config -d 'Config file (default ~/.config/fluxforge/config.toml)' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand config; and not __fish_seen_subcommand_from set-context use-context get-contexts help" -s o -l output -d 'Output format' -r -f -a "table\t''
wide\t'A table with more columns where a command has them (`agents list -o wide`)'
json\t''"
complete -c fluxctl -n "__fish_fluxctl_using_subcommand config; and not __fish_seen_subcommand_from set-context use-context get-contexts help" -l insecure -d 'Accept any server certificate (like curl -k)'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand config; and not __fish_seen_subcommand_from set-context use-context get-contexts help" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand config; and not __fish_seen_subcommand_from set-context use-context get-contexts help" -s V -l version -d 'Print version'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand config; and not __fish_seen_subcommand_from set-context use-context get-contexts help" -f -a "set-context" -d 'Create or update a context'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand config; and not __fish_seen_subcommand_from set-context use-context get-contexts help" -f -a "use-context" -d 'Make a context the default'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand config; and not __fish_seen_subcommand_from set-context use-context get-contexts help" -f -a "get-contexts" -d 'List contexts'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand config; and not __fish_seen_subcommand_from set-context use-context get-contexts help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand config; and __fish_seen_subcommand_from set-context" -l to-server -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand config; and __fish_seen_subcommand_from set-context" -l with-token-file -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand config; and __fish_seen_subcommand_from set-context" -l with-ca -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand config; and __fish_seen_subcommand_from set-context" -l server -d 'Control-plane URL (overrides the context)' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand config; and __fish_seen_subcommand_from set-context" -l token -d 'Bearer token (overrides the context; prefer FLUX_TOKEN or --token-file)' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand config; and __fish_seen_subcommand_from set-context" -l token-file -d 'File holding the bearer token' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand config; and __fish_seen_subcommand_from set-context" -l ca -d 'CA certificate (PEM) to trust' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand config; and __fish_seen_subcommand_from set-context" -l context -d 'Context from the config file to use' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand config; and __fish_seen_subcommand_from set-context" -l config -d 'Config file (default ~/.config/fluxforge/config.toml)' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand config; and __fish_seen_subcommand_from set-context" -s o -l output -d 'Output format' -r -f -a "table\t''
wide\t'A table with more columns where a command has them (`agents list -o wide`)'
json\t''"
complete -c fluxctl -n "__fish_fluxctl_using_subcommand config; and __fish_seen_subcommand_from set-context" -l allow-insecure
complete -c fluxctl -n "__fish_fluxctl_using_subcommand config; and __fish_seen_subcommand_from set-context" -l insecure -d 'Accept any server certificate (like curl -k)'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand config; and __fish_seen_subcommand_from set-context" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand config; and __fish_seen_subcommand_from set-context" -s V -l version -d 'Print version'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand config; and __fish_seen_subcommand_from use-context" -l server -d 'Control-plane URL (overrides the context)' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand config; and __fish_seen_subcommand_from use-context" -l token -d 'Bearer token (overrides the context; prefer FLUX_TOKEN or --token-file)' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand config; and __fish_seen_subcommand_from use-context" -l token-file -d 'File holding the bearer token' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand config; and __fish_seen_subcommand_from use-context" -l ca -d 'CA certificate (PEM) to trust' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand config; and __fish_seen_subcommand_from use-context" -l context -d 'Context from the config file to use' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand config; and __fish_seen_subcommand_from use-context" -l config -d 'Config file (default ~/.config/fluxforge/config.toml)' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand config; and __fish_seen_subcommand_from use-context" -s o -l output -d 'Output format' -r -f -a "table\t''
wide\t'A table with more columns where a command has them (`agents list -o wide`)'
json\t''"
complete -c fluxctl -n "__fish_fluxctl_using_subcommand config; and __fish_seen_subcommand_from use-context" -l insecure -d 'Accept any server certificate (like curl -k)'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand config; and __fish_seen_subcommand_from use-context" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand config; and __fish_seen_subcommand_from use-context" -s V -l version -d 'Print version'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand config; and __fish_seen_subcommand_from get-contexts" -l server -d 'Control-plane URL (overrides the context)' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand config; and __fish_seen_subcommand_from get-contexts" -l token -d 'Bearer token (overrides the context; prefer FLUX_TOKEN or --token-file)' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand config; and __fish_seen_subcommand_from get-contexts" -l token-file -d 'File holding the bearer token' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand config; and __fish_seen_subcommand_from get-contexts" -l ca -d 'CA certificate (PEM) to trust' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand config; and __fish_seen_subcommand_from get-contexts" -l context -d 'Context from the config file to use' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand config; and __fish_seen_subcommand_from get-contexts" -l config -d 'Config file (default ~/.config/fluxforge/config.toml)' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand config; and __fish_seen_subcommand_from get-contexts" -s o -l output -d 'Output format' -r -f -a "table\t''
wide\t'A table with more columns where a command has them (`agents list -o wide`)'
json\t''"
complete -c fluxctl -n "__fish_fluxctl_using_subcommand config; and __fish_seen_subcommand_from get-contexts" -l insecure -d 'Accept any server certificate (like curl -k)'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand config; and __fish_seen_subcommand_from get-contexts" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand config; and __fish_seen_subcommand_from get-contexts" -s V -l version -d 'Print version'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand config; and __fish_seen_subcommand_from help" -f -a "set-context" -d 'Create or update a context'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand config; and __fish_seen_subcommand_from help" -f -a "use-context" -d 'Make a context the default'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand config; and __fish_seen_subcommand_from help" -f -a "get-contexts" -d 'List contexts'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand config; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand bench; and not __fish_seen_subcommand_from converge submit jobs help" -l server -d 'Control-plane URL (overrides the context)' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand bench; and not __fish_seen_subcommand_from converge submit jobs help" -l token -d 'Bearer token (overrides the context; prefer FLUX_TOKEN or --token-file)' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand bench; and not __fish_seen_subcommand_from converge submit jobs help" -l token-file -d 'File holding the bearer token' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand bench; and not __fish_seen_subcommand_from converge submit jobs help" -l ca -d 'CA certificate (PEM) to trust' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand bench; and not __fish_seen_subcommand_from converge submit jobs help" -l context -d 'Context from the config file to use' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand bench; and not __fish_seen_subcommand_from converge submit jobs help" -l config -d 'Config file (default ~/.config/fluxforge/config.toml)' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand bench; and not __fish_seen_subcommand_from converge submit jobs help" -s o -l output -d 'Output format' -r -f -a "table\t''
wide\t'A table with more columns where a command has them (`agents list -o wide`)'
json\t''"
complete -c fluxctl -n "__fish_fluxctl_using_subcommand bench; and not __fish_seen_subcommand_from converge submit jobs help" -l insecure -d 'Accept any server certificate (like curl -k)'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand bench; and not __fish_seen_subcommand_from converge submit jobs help" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand bench; and not __fish_seen_subcommand_from converge submit jobs help" -s V -l version -d 'Print version'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand bench; and not __fish_seen_subcommand_from converge submit jobs help" -f -a "converge" -d 'Convergence: declare a throwaway state on the agents (all, or those with --label) and time until every target is compliant; the state is deleted afterwards'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand bench; and not __fish_seen_subcommand_from converge submit jobs help" -f -a "submit" -d 'Submission throughput: jobs acknowledged per second and submission latency, without waiting for the jobs to run (agents run them afterwards)'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand bench; and not __fish_seen_subcommand_from converge submit jobs help" -f -a "jobs" -d 'Job round trip: submit → result, latency percentiles and jobs/s, with submission and dispatch (created → started on the agent) latencies, failed requests and jobs left unfinished at the deadline'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand bench; and not __fish_seen_subcommand_from converge submit jobs help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand bench; and __fish_seen_subcommand_from converge" -s l -l label -d 'Select agents by label KEY=VALUE (repeatable); default: every registered agent' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand bench; and __fish_seen_subcommand_from converge" -l dir -d 'Directory on the agents where the marker files go' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand bench; and __fish_seen_subcommand_from converge" -l timeout -d 'Give up after this long' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand bench; and __fish_seen_subcommand_from converge" -l server -d 'Control-plane URL (overrides the context)' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand bench; and __fish_seen_subcommand_from converge" -l token -d 'Bearer token (overrides the context; prefer FLUX_TOKEN or --token-file)' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand bench; and __fish_seen_subcommand_from converge" -l token-file -d 'File holding the bearer token' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand bench; and __fish_seen_subcommand_from converge" -l ca -d 'CA certificate (PEM) to trust' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand bench; and __fish_seen_subcommand_from converge" -l context -d 'Context from the config file to use' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand bench; and __fish_seen_subcommand_from converge" -l config -d 'Config file (default ~/.config/fluxforge/config.toml)' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand bench; and __fish_seen_subcommand_from converge" -s o -l output -d 'Output format' -r -f -a "table\t''
wide\t'A table with more columns where a command has them (`agents list -o wide`)'
json\t''"
complete -c fluxctl -n "__fish_fluxctl_using_subcommand bench; and __fish_seen_subcommand_from converge" -l insecure -d 'Accept any server certificate (like curl -k)'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand bench; and __fish_seen_subcommand_from converge" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand bench; and __fish_seen_subcommand_from converge" -s V -l version -d 'Print version'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand bench; and __fish_seen_subcommand_from submit" -l count -d 'Jobs to submit at most' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand bench; and __fish_seen_subcommand_from submit" -l concurrency -d 'Jobs in flight at once (each worker submits, waits, repeats), 1 to 1024' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand bench; and __fish_seen_subcommand_from submit" -l connections -d 'HTTP/2 connections the workers share, 1 to 256; default one per 64 workers' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand bench; and __fish_seen_subcommand_from submit" -l duration -d 'Issue no new job after this long (with a large --count: a run of fixed length)' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand bench; and __fish_seen_subcommand_from submit" -l deadline -d 'End the run by then; jobs not finished by then are reported as unfinished' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand bench; and __fish_seen_subcommand_from submit" -l command -d 'Command each job runs' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand bench; and __fish_seen_subcommand_from submit" -l server -d 'Control-plane URL (overrides the context)' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand bench; and __fish_seen_subcommand_from submit" -l token -d 'Bearer token (overrides the context; prefer FLUX_TOKEN or --token-file)' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand bench; and __fish_seen_subcommand_from submit" -l token-file -d 'File holding the bearer token' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand bench; and __fish_seen_subcommand_from submit" -l ca -d 'CA certificate (PEM) to trust' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand bench; and __fish_seen_subcommand_from submit" -l context -d 'Context from the config file to use' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand bench; and __fish_seen_subcommand_from submit" -l config -d 'Config file (default ~/.config/fluxforge/config.toml)' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand bench; and __fish_seen_subcommand_from submit" -s o -l output -d 'Output format' -r -f -a "table\t''
wide\t'A table with more columns where a command has them (`agents list -o wide`)'
json\t''"
complete -c fluxctl -n "__fish_fluxctl_using_subcommand bench; and __fish_seen_subcommand_from submit" -l insecure -d 'Accept any server certificate (like curl -k)'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand bench; and __fish_seen_subcommand_from submit" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand bench; and __fish_seen_subcommand_from submit" -s V -l version -d 'Print version'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand bench; and __fish_seen_subcommand_from jobs" -l count -d 'Jobs to run at most' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand bench; and __fish_seen_subcommand_from jobs" -l concurrency -d 'Jobs in flight at once (each worker submits, waits, repeats), 1 to 1024' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand bench; and __fish_seen_subcommand_from jobs" -l connections -d 'HTTP/2 connections the workers share, 1 to 256; default one per 64 workers' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand bench; and __fish_seen_subcommand_from jobs" -l duration -d 'Issue no new job after this long (with a large --count: a run of fixed length)' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand bench; and __fish_seen_subcommand_from jobs" -l deadline -d 'End the run by then; jobs not finished by then are reported as unfinished' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand bench; and __fish_seen_subcommand_from jobs" -l command -d 'Command each job runs' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand bench; and __fish_seen_subcommand_from jobs" -s n -l node -d 'Pin jobs to one agent' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand bench; and __fish_seen_subcommand_from jobs" -l server -d 'Control-plane URL (overrides the context)' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand bench; and __fish_seen_subcommand_from jobs" -l token -d 'Bearer token (overrides the context; prefer FLUX_TOKEN or --token-file)' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand bench; and __fish_seen_subcommand_from jobs" -l token-file -d 'File holding the bearer token' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand bench; and __fish_seen_subcommand_from jobs" -l ca -d 'CA certificate (PEM) to trust' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand bench; and __fish_seen_subcommand_from jobs" -l context -d 'Context from the config file to use' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand bench; and __fish_seen_subcommand_from jobs" -l config -d 'Config file (default ~/.config/fluxforge/config.toml)' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand bench; and __fish_seen_subcommand_from jobs" -s o -l output -d 'Output format' -r -f -a "table\t''
wide\t'A table with more columns where a command has them (`agents list -o wide`)'
json\t''"
complete -c fluxctl -n "__fish_fluxctl_using_subcommand bench; and __fish_seen_subcommand_from jobs" -l insecure -d 'Accept any server certificate (like curl -k)'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand bench; and __fish_seen_subcommand_from jobs" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand bench; and __fish_seen_subcommand_from jobs" -s V -l version -d 'Print version'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand bench; and __fish_seen_subcommand_from help" -f -a "converge" -d 'Convergence: declare a throwaway state on the agents (all, or those with --label) and time until every target is compliant; the state is deleted afterwards'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand bench; and __fish_seen_subcommand_from help" -f -a "submit" -d 'Submission throughput: jobs acknowledged per second and submission latency, without waiting for the jobs to run (agents run them afterwards)'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand bench; and __fish_seen_subcommand_from help" -f -a "jobs" -d 'Job round trip: submit → result, latency percentiles and jobs/s, with submission and dispatch (created → started on the agent) latencies, failed requests and jobs left unfinished at the deadline'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand bench; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand chaos; and not __fish_seen_subcommand_from run plan help" -l server -d 'Control-plane URL (overrides the context)' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand chaos; and not __fish_seen_subcommand_from run plan help" -l token -d 'Bearer token (overrides the context; prefer FLUX_TOKEN or --token-file)' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand chaos; and not __fish_seen_subcommand_from run plan help" -l token-file -d 'File holding the bearer token' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand chaos; and not __fish_seen_subcommand_from run plan help" -l ca -d 'CA certificate (PEM) to trust' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand chaos; and not __fish_seen_subcommand_from run plan help" -l context -d 'Context from the config file to use' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand chaos; and not __fish_seen_subcommand_from run plan help" -l config -d 'Config file (default ~/.config/fluxforge/config.toml)' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand chaos; and not __fish_seen_subcommand_from run plan help" -s o -l output -d 'Output format' -r -f -a "table\t''
wide\t'A table with more columns where a command has them (`agents list -o wide`)'
json\t''"
complete -c fluxctl -n "__fish_fluxctl_using_subcommand chaos; and not __fish_seen_subcommand_from run plan help" -l insecure -d 'Accept any server certificate (like curl -k)'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand chaos; and not __fish_seen_subcommand_from run plan help" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand chaos; and not __fish_seen_subcommand_from run plan help" -s V -l version -d 'Print version'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand chaos; and not __fish_seen_subcommand_from run plan help" -f -a "run" -d 'Start a local cluster (redis-server, fluxd nodes, agents), run jobs and a desired state on it, inject the seeded faults, heal, and check the invariants on the whole history. Exit 0: every invariant held; 1: a violation; 2: the run itself failed'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand chaos; and not __fish_seen_subcommand_from run plan help" -f -a "plan" -d 'Print the fault schedule a seed gives, without running anything'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand chaos; and not __fish_seen_subcommand_from run plan help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand chaos; and __fish_seen_subcommand_from run" -l scenario -d 'Faults to inject (repeatable or comma-separated): leader-kill, leader-pause, agent-kill, redis-restart, partition, network-freeze, or all' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand chaos; and __fish_seen_subcommand_from run" -l duration -d 'How long faults are injected' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand chaos; and __fish_seen_subcommand_from run" -l seed -d 'Seed of the fault schedule (default: random, printed); the same seed gives the same schedule' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand chaos; and __fish_seen_subcommand_from run" -l nodes -d 'fluxd nodes (sharing one Redis)' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand chaos; and __fish_seen_subcommand_from run" -l agents -d 'Agents (real flux-agent processes)' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand chaos; and __fish_seen_subcommand_from run" -l rate -d 'Jobs submitted per second during the run' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand chaos; and __fish_seen_subcommand_from run" -l bin-dir -d 'Directory holding fluxd and flux-agent (default: fluxctl\'s own directory)' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand chaos; and __fish_seen_subcommand_from run" -l redis-server -d 'redis-server to run (default: the one on PATH)' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand chaos; and __fish_seen_subcommand_from run" -l work-dir -d 'Empty directory for logs, histories and data (default: a temporary one, removed after a run that passed)' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand chaos; and __fish_seen_subcommand_from run" -l heal-timeout -d 'After the faults, how long jobs and states get to settle' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand chaos; and __fish_seen_subcommand_from run" -l server -d 'Control-plane URL (overrides the context)' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand chaos; and __fish_seen_subcommand_from run" -l token -d 'Bearer token (overrides the context; prefer FLUX_TOKEN or --token-file)' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand chaos; and __fish_seen_subcommand_from run" -l token-file -d 'File holding the bearer token' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand chaos; and __fish_seen_subcommand_from run" -l ca -d 'CA certificate (PEM) to trust' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand chaos; and __fish_seen_subcommand_from run" -l context -d 'Context from the config file to use' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand chaos; and __fish_seen_subcommand_from run" -l config -d 'Config file (default ~/.config/fluxforge/config.toml)' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand chaos; and __fish_seen_subcommand_from run" -s o -l output -d 'Output format' -r -f -a "table\t''
wide\t'A table with more columns where a command has them (`agents list -o wide`)'
json\t''"
complete -c fluxctl -n "__fish_fluxctl_using_subcommand chaos; and __fish_seen_subcommand_from run" -l keep -d 'Keep the work directory even when the run passed'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand chaos; and __fish_seen_subcommand_from run" -l unsafe-ignore-lease -d 'TESTING ONLY: nodes keep leader work after losing their lease (until a write is fenced), to see fencing alone keep every invariant'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand chaos; and __fish_seen_subcommand_from run" -l unsafe-no-fencing -d 'TESTING ONLY: as --unsafe-ignore-lease and with fencing disabled, to see the checker catch two leaders writing at once'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand chaos; and __fish_seen_subcommand_from run" -l insecure -d 'Accept any server certificate (like curl -k)'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand chaos; and __fish_seen_subcommand_from run" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand chaos; and __fish_seen_subcommand_from run" -s V -l version -d 'Print version'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand chaos; and __fish_seen_subcommand_from plan" -l scenario -d 'Faults to inject (repeatable or comma-separated): leader-kill, leader-pause, agent-kill, redis-restart, partition, network-freeze, or all' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand chaos; and __fish_seen_subcommand_from plan" -l duration -d 'How long faults are injected' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand chaos; and __fish_seen_subcommand_from plan" -l seed -d 'Seed of the fault schedule (default: random, printed); the same seed gives the same schedule' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand chaos; and __fish_seen_subcommand_from plan" -l server -d 'Control-plane URL (overrides the context)' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand chaos; and __fish_seen_subcommand_from plan" -l token -d 'Bearer token (overrides the context; prefer FLUX_TOKEN or --token-file)' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand chaos; and __fish_seen_subcommand_from plan" -l token-file -d 'File holding the bearer token' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand chaos; and __fish_seen_subcommand_from plan" -l ca -d 'CA certificate (PEM) to trust' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand chaos; and __fish_seen_subcommand_from plan" -l context -d 'Context from the config file to use' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand chaos; and __fish_seen_subcommand_from plan" -l config -d 'Config file (default ~/.config/fluxforge/config.toml)' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand chaos; and __fish_seen_subcommand_from plan" -s o -l output -d 'Output format' -r -f -a "table\t''
wide\t'A table with more columns where a command has them (`agents list -o wide`)'
json\t''"
complete -c fluxctl -n "__fish_fluxctl_using_subcommand chaos; and __fish_seen_subcommand_from plan" -l insecure -d 'Accept any server certificate (like curl -k)'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand chaos; and __fish_seen_subcommand_from plan" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand chaos; and __fish_seen_subcommand_from plan" -s V -l version -d 'Print version'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand chaos; and __fish_seen_subcommand_from help" -f -a "run" -d 'Start a local cluster (redis-server, fluxd nodes, agents), run jobs and a desired state on it, inject the seeded faults, heal, and check the invariants on the whole history. Exit 0: every invariant held; 1: a violation; 2: the run itself failed'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand chaos; and __fish_seen_subcommand_from help" -f -a "plan" -d 'Print the fault schedule a seed gives, without running anything'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand chaos; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand completions" -l server -d 'Control-plane URL (overrides the context)' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand completions" -l token -d 'Bearer token (overrides the context; prefer FLUX_TOKEN or --token-file)' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand completions" -l token-file -d 'File holding the bearer token' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand completions" -l ca -d 'CA certificate (PEM) to trust' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand completions" -l context -d 'Context from the config file to use' -r
complete -c fluxctl -n "__fish_fluxctl_using_subcommand completions" -l config -d 'Config file (default ~/.config/fluxforge/config.toml)' -r -F
complete -c fluxctl -n "__fish_fluxctl_using_subcommand completions" -s o -l output -d 'Output format' -r -f -a "table\t''
wide\t'A table with more columns where a command has them (`agents list -o wide`)'
json\t''"
complete -c fluxctl -n "__fish_fluxctl_using_subcommand completions" -l insecure -d 'Accept any server certificate (like curl -k)'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand completions" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand completions" -s V -l version -d 'Print version'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand help; and not __fish_seen_subcommand_from job rollout schedule agents token apply diff state get delete tenants events webhooks audit backup status whoami config bench chaos completions help" -f -a "job" -d 'Run and inspect jobs'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand help; and not __fish_seen_subcommand_from job rollout schedule agents token apply diff state get delete tenants events webhooks audit backup status whoami config bench chaos completions help" -f -a "rollout" -d 'Follow and steer rollouts (runs across a fleet at a controlled rate)'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand help; and not __fish_seen_subcommand_from job rollout schedule agents token apply diff state get delete tenants events webhooks audit backup status whoami config bench chaos completions help" -f -a "schedule" -d 'Cron jobs that fire once per slot: create, list, get, pause, resume, trigger, delete'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand help; and not __fish_seen_subcommand_from job rollout schedule agents token apply diff state get delete tenants events webhooks audit backup status whoami config bench chaos completions help" -f -a "agents" -d 'List and inspect agents'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand help; and not __fish_seen_subcommand_from job rollout schedule agents token apply diff state get delete tenants events webhooks audit backup status whoami config bench chaos completions help" -f -a "token" -d 'Create and revoke tokens (admin)'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand help; and not __fish_seen_subcommand_from job rollout schedule agents token apply diff state get delete tenants events webhooks audit backup status whoami config bench chaos completions help" -f -a "apply" -d 'Declare desired state from a state.toml: create and update its states (and with --prune delete the tenant\'s states it does not list)'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand help; and not __fish_seen_subcommand_from job rollout schedule agents token apply diff state get delete tenants events webhooks audit backup status whoami config bench chaos completions help" -f -a "diff" -d 'Show what `apply` would change. Exit 0: nothing; 1: changes; 2: error'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand help; and not __fish_seen_subcommand_from job rollout schedule agents token apply diff state get delete tenants events webhooks audit backup status whoami config bench chaos completions help" -f -a "state" -d 'Steer desired states: resume the remediation a state\'s rollout halted'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand help; and not __fish_seen_subcommand_from job rollout schedule agents token apply diff state get delete tenants events webhooks audit backup status whoami config bench chaos completions help" -f -a "get" -d 'Show objects (desired states with their targets\' status)'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand help; and not __fish_seen_subcommand_from job rollout schedule agents token apply diff state get delete tenants events webhooks audit backup status whoami config bench chaos completions help" -f -a "delete" -d 'Delete objects'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand help; and not __fish_seen_subcommand_from job rollout schedule agents token apply diff state get delete tenants events webhooks audit backup status whoami config bench chaos completions help" -f -a "tenants" -d 'Tenants with their usage, and their quotas'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand help; and not __fish_seen_subcommand_from job rollout schedule agents token apply diff state get delete tenants events webhooks audit backup status whoami config bench chaos completions help" -f -a "events" -d 'Print the tenant\'s events (jobs, agents, states, tokens); -f follows them live'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand help; and not __fish_seen_subcommand_from job rollout schedule agents token apply diff state get delete tenants events webhooks audit backup status whoami config bench chaos completions help" -f -a "webhooks" -d 'Send events to other systems: signed HTTPS deliveries, at least once (admins)'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand help; and not __fish_seen_subcommand_from job rollout schedule agents token apply diff state get delete tenants events webhooks audit backup status whoami config bench chaos completions help" -f -a "audit" -d 'Read and verify the audit log (admins)'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand help; and not __fish_seen_subcommand_from job rollout schedule agents token apply diff state get delete tenants events webhooks audit backup status whoami config bench chaos completions help" -f -a "backup" -d 'Back up, verify and restore the whole store (admins of tenant default)'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand help; and not __fish_seen_subcommand_from job rollout schedule agents token apply diff state get delete tenants events webhooks audit backup status whoami config bench chaos completions help" -f -a "status" -d 'Cluster status: this node, leader, epoch, agents by state'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand help; and not __fish_seen_subcommand_from job rollout schedule agents token apply diff state get delete tenants events webhooks audit backup status whoami config bench chaos completions help" -f -a "whoami" -d 'Show the identity of the current token'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand help; and not __fish_seen_subcommand_from job rollout schedule agents token apply diff state get delete tenants events webhooks audit backup status whoami config bench chaos completions help" -f -a "config" -d 'Manage contexts in the config file'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand help; and not __fish_seen_subcommand_from job rollout schedule agents token apply diff state get delete tenants events webhooks audit backup status whoami config bench chaos completions help" -f -a "bench" -d 'Benchmarks against a running control plane'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand help; and not __fish_seen_subcommand_from job rollout schedule agents token apply diff state get delete tenants events webhooks audit backup status whoami config bench chaos completions help" -f -a "chaos" -d 'Fault-injection runs on a local cluster, judged by an invariant checker'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand help; and not __fish_seen_subcommand_from job rollout schedule agents token apply diff state get delete tenants events webhooks audit backup status whoami config bench chaos completions help" -f -a "completions" -d 'Print shell completions'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand help; and not __fish_seen_subcommand_from job rollout schedule agents token apply diff state get delete tenants events webhooks audit backup status whoami config bench chaos completions help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand help; and __fish_seen_subcommand_from job" -f -a "run" -d 'Submit a job. One argument is a shell command line; several are an argv'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand help; and __fish_seen_subcommand_from job" -f -a "get" -d 'Show one job'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand help; and __fish_seen_subcommand_from job" -f -a "list" -d 'List jobs, newest first: one page, or every page with --all'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand help; and __fish_seen_subcommand_from job" -f -a "logs" -d 'Print a job\'s output'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand help; and __fish_seen_subcommand_from job" -f -a "cancel" -d 'Cancel a job (running jobs are killed with their whole process group)'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand help; and __fish_seen_subcommand_from job" -f -a "wait" -d 'Wait for a job to end; exits like `job run --wait`'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand help; and __fish_seen_subcommand_from job" -f -a "attempts" -d 'Show a job\'s attempts'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand help; and __fish_seen_subcommand_from rollout" -f -a "list" -d 'List rollouts, newest first'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand help; and __fish_seen_subcommand_from rollout" -f -a "get" -d 'Show a rollout and its targets'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand help; and __fish_seen_subcommand_from rollout" -f -a "wait" -d 'Follow a rollout until it finishes; exits 0, 1, 3 or 130 like `job run --wait`'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand help; and __fish_seen_subcommand_from rollout" -f -a "pause" -d 'Start no new target until resumed (running ones finish)'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand help; and __fish_seen_subcommand_from rollout" -f -a "resume" -d 'Resume a paused rollout'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand help; and __fish_seen_subcommand_from rollout" -f -a "cancel" -d 'Cancel a rollout: nothing new starts, running targets are cancelled'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand help; and __fish_seen_subcommand_from rollout" -f -a "retry" -d 'Run the failed, skipped and not started targets of a finished rollout again, as a new rollout that references it'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand help; and __fish_seen_subcommand_from schedule" -f -a "create" -d 'Create a schedule: a command run on a cron expression'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand help; and __fish_seen_subcommand_from schedule" -f -a "list" -d 'List schedules with their next slot and last run'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand help; and __fish_seen_subcommand_from schedule" -f -a "get" -d 'Show a schedule: its next five slots and its last runs with their results'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand help; and __fish_seen_subcommand_from schedule" -f -a "pause" -d 'Stop firing (slots during the pause are not caught up)'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand help; and __fish_seen_subcommand_from schedule" -f -a "resume" -d 'Fire again from now on'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand help; and __fish_seen_subcommand_from schedule" -f -a "trigger" -d 'Start one run now'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand help; and __fish_seen_subcommand_from schedule" -f -a "delete" -d 'Delete a schedule (its jobs stay)'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand help; and __fish_seen_subcommand_from agents" -f -a "list" -d 'List agents of the tenant (`-o wide`: admin labels and the main facts too)'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand help; and __fish_seen_subcommand_from agents" -f -a "get" -d 'Show one agent: labels, admin labels and facts'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand help; and __fish_seen_subcommand_from agents" -f -a "drain" -d 'Stop new work reaching an agent; what it runs finishes'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand help; and __fish_seen_subcommand_from agents" -f -a "uncordon" -d 'Let new work reach a drained agent again'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand help; and __fish_seen_subcommand_from agents" -f -a "revoke" -d 'End every credential of an agent issued before now: it is refused from its next call and its attempts are requeued as for a dead agent. It can enroll again later'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand help; and __fish_seen_subcommand_from agents" -f -a "label" -d 'Set admin labels (KEY=VALUE) and remove them (--remove KEY): admins only. They are kept apart from the labels the agent declares, survive its re-registrations, and win over a declared label of the same key'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand help; and __fish_seen_subcommand_from token" -f -a "create" -d 'Issue a token'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand help; and __fish_seen_subcommand_from token" -f -a "revoke" -d 'Revoke a token, given the token or its id (jti)'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand help; and __fish_seen_subcommand_from state" -f -a "resume" -d 'Resume the remediation a state\'s rollout halted (its failed repairs are forgiven)'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand help; and __fish_seen_subcommand_from get" -f -a "states" -d 'Desired states with their targets\' status; with a name, the per-target detail'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand help; and __fish_seen_subcommand_from delete" -f -a "state" -d 'Delete a desired state (its agents are left as they are)'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand help; and __fish_seen_subcommand_from tenants" -f -a "list" -d 'Tenants with queued and running jobs, agents, states and quotas (admins)'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand help; and __fish_seen_subcommand_from tenants" -f -a "create" -d 'Create a tenant (admins of tenant default) and print a first admin token for it'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand help; and __fish_seen_subcommand_from tenants" -f -a "quota" -d 'Show or set a tenant\'s quota'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand help; and __fish_seen_subcommand_from webhooks" -f -a "create" -d 'Create a webhook: matching events are POSTed to URL, signed, at least once'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand help; and __fish_seen_subcommand_from webhooks" -f -a "list" -d 'List the tenant\'s webhooks'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand help; and __fish_seen_subcommand_from webhooks" -f -a "get" -d 'Show a webhook and its recent deliveries'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand help; and __fish_seen_subcommand_from webhooks" -f -a "delete" -d 'Delete a webhook (its cursor and delivery records with it)'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand help; and __fish_seen_subcommand_from webhooks" -f -a "test" -d 'Send a test delivery now'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand help; and __fish_seen_subcommand_from audit" -f -a "log" -d 'Print audit records, oldest first (a page; --all follows every page)'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand help; and __fish_seen_subcommand_from audit" -f -a "verify" -d 'Walk the hash chain; exit 1 if a record was altered, removed or cut off. With --file, check an export file instead; exit 1 if it was edited'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand help; and __fish_seen_subcommand_from audit" -f -a "export" -d 'Write the records made before DATE (after the last export) and a signed checkpoint to FILE; once exported, `fluxd --audit-retention` may prune them'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand help; and __fish_seen_subcommand_from backup" -f -a "create" -d 'Take a consistent snapshot of every tenant and write it to FILE (`-` for stdout). The file is owner-only (0600), written through a new temporary file beside it'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand help; and __fish_seen_subcommand_from backup" -f -a "verify" -d 'Authenticate a backup file: format, every line, object count, checksum and the MAC under the cluster\'s backup key. The server checks it, unless --signing-key names the signing key file of the cluster that took it (then nothing is sent anywhere)'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand help; and __fish_seen_subcommand_from backup" -f -a "restore" -d 'Restore a backup (authenticated first). Refuses a store that holds objects unless --force, which replaces everything. Afterwards the fencing epoch is above every earlier one'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand help; and __fish_seen_subcommand_from config" -f -a "set-context" -d 'Create or update a context'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand help; and __fish_seen_subcommand_from config" -f -a "use-context" -d 'Make a context the default'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand help; and __fish_seen_subcommand_from config" -f -a "get-contexts" -d 'List contexts'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand help; and __fish_seen_subcommand_from bench" -f -a "converge" -d 'Convergence: declare a throwaway state on the agents (all, or those with --label) and time until every target is compliant; the state is deleted afterwards'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand help; and __fish_seen_subcommand_from bench" -f -a "submit" -d 'Submission throughput: jobs acknowledged per second and submission latency, without waiting for the jobs to run (agents run them afterwards)'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand help; and __fish_seen_subcommand_from bench" -f -a "jobs" -d 'Job round trip: submit → result, latency percentiles and jobs/s, with submission and dispatch (created → started on the agent) latencies, failed requests and jobs left unfinished at the deadline'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand help; and __fish_seen_subcommand_from chaos" -f -a "run" -d 'Start a local cluster (redis-server, fluxd nodes, agents), run jobs and a desired state on it, inject the seeded faults, heal, and check the invariants on the whole history. Exit 0: every invariant held; 1: a violation; 2: the run itself failed'
complete -c fluxctl -n "__fish_fluxctl_using_subcommand help; and __fish_seen_subcommand_from chaos" -f -a "plan" -d 'Print the fault schedule a seed gives, without running anything'
