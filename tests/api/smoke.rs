use crate::helpers::TestApp;

#[test]
fn a_fresh_server_serves_alices_seeded_balances() {
    let app = TestApp::spawn();
    assert_eq!(app.balance("user_alice", "GOLD"), 1000);
    assert_eq!(app.balance("user_alice", "DIAMOND"), 100);
    assert_eq!(app.balance("user_alice", "LOYALTY"), 500);
}
