//! Conditional creates racing: the configuration tag lets exactly one of many clients that read
//! the same configuration create a dataset, so names stay unique without a lock.

use std::sync::{Arc, Barrier};

use flocker_api::{CreateDataset, NodeUuid};
use flocker_testkit::RunningControl;

#[test]
fn fifty_conditional_creates_with_one_tag_make_exactly_one_dataset() {
    let control = RunningControl::start(env!("CARGO_BIN_EXE_flocker-control").as_ref());
    let (_, tag) = control.client.list_datasets().unwrap();
    let barrier = Arc::new(Barrier::new(50));
    let racers: Vec<_> = (0..50)
        .map(|_| {
            let (client, tag, barrier) = (control.client.clone(), tag.clone(), barrier.clone());
            std::thread::spawn(move || {
                let request = CreateDataset {
                    primary: NodeUuid::random(),
                    dataset_id: None,
                    maximum_size: None,
                    metadata: [("name".to_owned(), "orders-db".to_owned())].into(),
                };
                barrier.wait();
                match client.create_dataset(&request, Some(&tag)) {
                    Ok(_) => 201,
                    Err(error) => error.status().unwrap_or_else(|| panic!("{error}")),
                }
            })
        })
        .collect();
    let mut statuses: Vec<u16> = racers.into_iter().map(|r| r.join().unwrap()).collect();
    statuses.sort();
    assert_eq!(statuses[0], 201);
    assert!(statuses[1..].iter().all(|s| *s == 412), "{statuses:?}");
    let (datasets, _) = control.client.list_datasets().unwrap();
    assert_eq!(datasets.len(), 1);
    assert_eq!(datasets[0].metadata["name"], "orders-db");
}
