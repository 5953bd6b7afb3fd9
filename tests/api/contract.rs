use crate::helpers::TestApp;
#[test]
fn probe() {
    let app = TestApp::spawn();
    let t = std::time::Instant::now();
    for n in 0..200 {
        let r = app.post_topup("u1", "GOLD", 9007199254740991, &format!("k-{n}"));
        assert_eq!(r.status, 201);
    }
    eprintln!("seq 200: {:?}", t.elapsed());
    let t = std::time::Instant::now();
    std::thread::scope(|s| {
        for w in 0..8 {
            let app = &app;
            s.spawn(move || {
                for n in 0..100 {
                    let r =
                        app.post_topup("u2", "DIAMOND", 9007199254740991, &format!("p-{w}-{n}"));
                    assert_eq!(r.status, 201);
                }
            });
        }
    });
    eprintln!("par 800: {:?}", t.elapsed());
}
