//! `flux-agent`, the process that runs on each target machine. It connects out to the control
//! plane, long-polls for tasks, executes them in their own process group and reports output and
//! exit codes.
fn main() {}
