//! The agent removes everything it owns: tables, rules, MPTCP endpoints and
//! its nft table. On SIGTERM before it exits; after SIGKILL, the next start
//! clears the leftovers (and its own stop then leaves nothing).
//!
//! Run as root:
//! `cargo test -p mpbond-tests --test control_cleanup -- --include-ignored --nocapture`.

mod common;

use std::time::Duration;

use common::control::{control_bed, state_text, wait_managed};

const GRACE: Duration = Duration::from_secs(10);

#[test]
#[ignore = "needs root and netns"]
fn nothing_of_the_agent_survives_sigterm_or_sigkill_and_restart() {
    let (bed, _conc, _server, cfg) = control_bed(&[40, 60]);

    let agent = bed.start_agent(&cfg).expect("agent starts");
    wait_managed(&bed, &agent, &[1, 2], Duration::from_secs(5));
    let running = bed.owned_state().expect("owned state");
    println!("while running:\n{running}");
    assert!(!running.nft_tables.is_empty(), "no nft table while running");
    let status = agent.stop(GRACE);
    let after = bed.owned_state().expect("owned state");
    println!("after SIGTERM ({status:?}):\n{after}");
    assert!(
        status.is_some_and(|s| s.success()),
        "unclean exit: {status:?}"
    );
    assert!(after.is_empty(), "left behind after SIGTERM:\n{after}");

    let agent = bed.start_agent(&cfg).expect("agent starts again");
    wait_managed(&bed, &agent, &[1, 2], Duration::from_secs(5));
    let before_kill = bed.owned_state().expect("owned state");
    let _ = agent.kill();
    let leftovers = bed.owned_state().expect("owned state");
    println!("after SIGKILL:\n{leftovers}");
    assert!(
        !leftovers.no_routing(),
        "SIGKILL left no routing state, so the restart proves nothing"
    );

    let agent = bed.start_agent(&cfg).expect("agent restarts after SIGKILL");
    wait_managed(&bed, &agent, &[1, 2], Duration::from_secs(5));
    let restarted = bed.owned_state().expect("owned state");
    assert_eq!(
        (restarted.rules.len(), restarted.endpoints.len()),
        (before_kill.rules.len(), before_kill.endpoints.len()),
        "the restart duplicated or lost state:\nbefore the kill:\n{before_kill}\nnow:\n{restarted}\n{}",
        agent.log_tail(30)
    );
    let status = agent.stop(GRACE);
    let after = bed.owned_state().expect("owned state");
    println!("after restart and SIGTERM ({status:?}):\n{after}");
    assert!(
        after.is_empty(),
        "left behind after the restart and stop:\n{}",
        state_text(&bed)
    );
}
