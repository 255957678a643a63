//! The Kubernetes manifests under deploy/kubernetes: valid against the Kubernetes schemas
//! (`kubernetes-validate`, installed by `make tools`, bundles them), and consistent with what
//! the code relies on — the container's command line parses as a `wasmflow` command line and
//! resumes, the job file in the ConfigMap is a valid job with its checkpoints on object
//! storage, ports, probes, mounts and the image's operator paths agree (docs/deployment.md).

use std::path::{Path, PathBuf};
use std::process::Command;

use clap::Parser;
use serde_json::Value;
use wasmflow_host::checkpoint::Location;
use wasmflow_host::cli::{Cli, Command as Sub};
use wasmflow_host::job::JobSpec;
use wasmflow_tests::workspace_root;

fn manifests() -> Vec<PathBuf> {
    let dir = workspace_root().join("deploy/kubernetes");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir).unwrap().flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == "yaml")).collect();
    files.sort();
    files
}

/// Every document of every manifest, as JSON (PyYAML of the validator's own environment).
fn documents() -> Vec<Value> {
    let python = wasmflow_tests::tools_dir().join("k8s/bin/python");
    assert!(python.exists(), "{} is missing: run `make tools` (make test does)", python.display());
    let out = Command::new(python)
        .args(["-c", "import json, sys, yaml; print(json.dumps([d for f in sys.argv[1:] for d in yaml.safe_load_all(open(f)) if d]))"])
        .args(manifests())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn by_kind<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    docs.iter().find(|d| d["kind"] == kind).unwrap_or_else(|| panic!("no {kind} in deploy/kubernetes"))
}

#[test]
fn the_manifests_validate_against_the_kubernetes_schemas() {
    let validator = wasmflow_tests::tools_dir().join("bin/kubernetes-validate");
    assert!(validator.exists(), "{} is missing: run `make tools` (make test does)", validator.display());
    let files = manifests();
    assert_eq!(files.len(), 5, "configmap, job, pvc, service, workers: {files:?}");
    let out = Command::new(validator).arg("--strict").args(&files).output().unwrap();
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
}

#[test]
fn the_manifests_agree_with_the_command_line_and_the_job_file() {
    let docs = documents();
    let (config_map, job, pvc, service) =
        (by_kind(&docs, "ConfigMap"), by_kind(&docs, "Job"), by_kind(&docs, "PersistentVolumeClaim"), by_kind(&docs, "Service"));
    let pod = &job["spec"]["template"]["spec"];
    assert_eq!(pod["restartPolicy"], "OnFailure", "exit 0 (finished or stopped) must not restart the job");
    let container = &pod["containers"][0];
    let mounts = container["volumeMounts"].as_array().unwrap();
    let volumes = pod["volumes"].as_array().unwrap();
    let volume = |name: &str| volumes.iter().find(|v| v["name"] == name).unwrap_or_else(|| panic!("no volume {name}"));
    let mount_of = |path: &Path| -> &Value {
        mounts
            .iter()
            .filter(|m| path.starts_with(m["mountPath"].as_str().unwrap()))
            .max_by_key(|m| m["mountPath"].as_str().unwrap().len())
            .unwrap_or_else(|| panic!("{} is on no volume", path.display()))
    };

    // The container runs `wasmflow run <job file> --resume` with the API on the pod's port.
    let args: Vec<String> = container["args"].as_array().unwrap().iter().map(|a| a.as_str().unwrap().to_string()).collect();
    let cli = Cli::try_parse_from(std::iter::once("wasmflow".to_string()).chain(args.iter().cloned())).unwrap_or_else(|e| panic!("{args:?}: {e}"));
    let Sub::Run(run) = cli.command else { panic!("the container does not run a job: {args:?}") };
    assert!(run.resume, "a replaced pod must resume where the job left off");
    let port: u16 = run.control_address.as_deref().and_then(|a| a.rsplit(':').next()).unwrap().parse().unwrap();
    let api = container["ports"].as_array().unwrap().iter().find(|p| p["name"] == "api").expect("a port named api");
    assert_eq!(api["containerPort"], port);
    assert_eq!(service["spec"]["ports"][0]["targetPort"], "api");
    assert_eq!(service["metadata"]["annotations"]["prometheus.io/port"], port.to_string());
    assert_eq!(service["metadata"]["annotations"]["prometheus.io/path"], "/metrics");
    let openapi: Value = serde_json::from_str(&std::fs::read_to_string(workspace_root().join("docs/openapi.json")).unwrap()).unwrap();
    let probe = container["readinessProbe"]["httpGet"]["path"].as_str().unwrap();
    assert!(openapi["paths"][probe]["get"].is_object(), "the readiness probe {probe} is a GET route of the API");
    for (key, value) in service["spec"]["selector"].as_object().unwrap() {
        assert_eq!(&job["spec"]["template"]["metadata"]["labels"][key], value, "the Service selects the job's pod by {key}");
    }

    // The job file comes from the ConfigMap, mounted where the command line reads it.
    let job_file = &run.job;
    let mount = mount_of(job_file);
    assert_eq!(volume(mount["name"].as_str().unwrap())["configMap"]["name"], config_map["metadata"]["name"]);
    let text = config_map["data"][job_file.file_name().unwrap().to_str().unwrap()].as_str().expect("the ConfigMap holds the job file");
    let spec = JobSpec::parse(text, job_file).unwrap_or_else(|e| panic!("the ConfigMap's job file: {e:#}"));
    assert!(spec.problems().is_empty(), "{:?}", spec.problems());
    assert!(matches!(spec.checkpoint_location().unwrap(), Location::Object(_)), "checkpoints must outlive the pod");
    assert!(matches!(spec.savepoint_location().unwrap(), Location::Object(_)), "savepoints must outlive the pod");

    // The sink commits to the persistent volume; the operators are where the image puts them.
    for op in &spec.operators {
        if let Some(files) = &op.grants.files {
            let mount = mount_of(files);
            assert_eq!(volume(mount["name"].as_str().unwrap())["persistentVolumeClaim"]["claimName"], pvc["metadata"]["name"], "{}'s output", op.id);
        }
        let module =
            op.module.strip_prefix("/opt/wasmflow/operators").unwrap_or_else(|_| panic!("{} is not in the image's operator directory", op.module.display()));
        assert!(
            wasmflow_tests::target_dir().join("operators").join(module).exists(),
            "{} is not a stock operator (make operators builds them)",
            module.display()
        );
    }
    let dockerfile = std::fs::read_to_string(workspace_root().join("deploy/Dockerfile")).unwrap();
    assert!(dockerfile.contains("COPY target/operators/ /opt/wasmflow/operators/"));

    // The root filesystem is read-only: the compiled-module cache and temp files go to a volume.
    let env = container["env"].as_array().unwrap();
    let var = |name: &str| env.iter().find(|e| e["name"] == name).unwrap_or_else(|| panic!("no env {name}"));
    assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true);
    assert!(volume(mount_of(Path::new(var("WASMFLOW_CACHE_DIR")["value"].as_str().unwrap()))["name"].as_str().unwrap())["emptyDir"].is_object());
    assert!(volume(mount_of(Path::new("/tmp"))["name"].as_str().unwrap())["emptyDir"].is_object());
    for secret in ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "WASMFLOW_CLUSTER_SECRET"] {
        assert!(var(secret)["valueFrom"]["secretKeyRef"].is_object(), "{secret} comes from a Secret, not the manifest");
    }
}

/// The workers' StatefulSet and the job manager agree: as many workers as `--workers`, attaching
/// to the job manager's Service on its cluster port with the same Secret, advertising names the
/// headless Service resolves, and writing to the same storage and shared volume.
#[test]
fn the_workers_agree_with_their_job_manager() {
    let docs = documents();
    let job = by_kind(&docs, "Job");
    let workers = by_kind(&docs, "StatefulSet");
    let pvc = by_kind(&docs, "PersistentVolumeClaim");
    let services: Vec<&Value> = docs.iter().filter(|d| d["kind"] == "Service").collect();
    let jm_pod = &job["spec"]["template"]["spec"];
    let jm = &jm_pod["containers"][0];
    let worker_pod = &workers["spec"]["template"]["spec"];
    let worker = &worker_pod["containers"][0];
    let args = |c: &Value| -> Vec<String> { c["args"].as_array().unwrap().iter().map(|a| a.as_str().unwrap().to_string()).collect() };
    let parse = |c: &Value| Cli::try_parse_from(std::iter::once("wasmflow".to_string()).chain(args(c))).unwrap_or_else(|e| panic!("{:?}: {e}", args(c)));
    let port_named = |c: &Value, name: &str| -> u64 {
        c["ports"].as_array().unwrap().iter().find(|p| p["name"] == name).unwrap_or_else(|| panic!("no port {name}"))["containerPort"].as_u64().unwrap()
    };
    let selects = |service: &Value, labels: &Value| service["spec"]["selector"].as_object().unwrap().iter().all(|(k, v)| &labels[k] == v);

    let Sub::Run(run) = parse(jm).command else { panic!("the job manager does not run a job") };
    let Sub::Worker(w) = parse(worker).command else { panic!("the StatefulSet does not run workers: {:?}", args(worker)) };
    assert!(run.external_workers, "workers are started by Kubernetes, not by the job manager");
    assert_eq!(run.workers.map(u64::from), workers["spec"]["replicas"].as_u64(), "--workers matches the replicas");
    assert!(!w.once, "a worker outlives a job manager's restart");
    assert_eq!(u64::from(run.cluster_listen.port()), port_named(jm, "cluster"));

    // Workers reach the job manager through the Service that selects the job manager's pod.
    let (host, port) = w.job_manager.rsplit_once(':').unwrap();
    let jm_service = services.iter().find(|s| s["metadata"]["name"] == host).unwrap_or_else(|| panic!("no Service {host}"));
    assert!(selects(jm_service, &job["spec"]["template"]["metadata"]["labels"]));
    assert!(!selects(jm_service, &workers["spec"]["template"]["metadata"]["labels"]), "the API and cluster Service must not select workers");
    let cluster = jm_service["spec"]["ports"].as_array().unwrap().iter().find(|p| p["port"].as_u64() == port.parse().ok()).expect("the cluster port");
    assert_eq!(cluster["targetPort"], "cluster");

    // Each worker advertises its stable name under the headless Service.
    let headless = services.iter().find(|s| s["metadata"]["name"] == workers["spec"]["serviceName"]).expect("the StatefulSet's Service");
    assert_eq!(headless["spec"]["clusterIP"], "None");
    assert!(selects(headless, &workers["spec"]["template"]["metadata"]["labels"]));
    assert_eq!(u64::from(w.listen.port()), port_named(worker, "data"));
    let advertise = w.advertise.expect("a worker behind a Service must advertise its name");
    assert_eq!(advertise, format!("$(POD_NAME).{}:{}", workers["spec"]["serviceName"].as_str().unwrap(), w.listen.port()));
    let env = |c: &Value, name: &str| c["env"].as_array().unwrap().iter().find(|e| e["name"] == name).cloned().unwrap_or_else(|| panic!("no env {name}"));
    assert_eq!(env(worker, "POD_NAME")["valueFrom"]["fieldRef"]["fieldPath"], "metadata.name");

    // The same secret, object storage and shared output volume on both sides.
    for name in ["WASMFLOW_CLUSTER_SECRET", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT", "AWS_REGION", "AWS_ALLOW_HTTP"] {
        assert_eq!(env(worker, name), env(jm, name), "{name}");
    }
    let data_mount = |pod: &Value, c: &Value| {
        let volume =
            pod["volumes"].as_array().unwrap().iter().find(|v| v["persistentVolumeClaim"]["claimName"] == pvc["metadata"]["name"]).expect("the data volume");
        c["volumeMounts"].as_array().unwrap().iter().find(|m| m["name"] == volume["name"]).expect("mounted")["mountPath"].clone()
    };
    assert_eq!(data_mount(worker_pod, worker), data_mount(jm_pod, jm), "sinks on workers write where the job manager records attempts");
    assert_eq!(pvc["spec"]["accessModes"][0], "ReadWriteMany", "pods on several nodes share the output volume");
    assert_eq!(worker["securityContext"]["readOnlyRootFilesystem"], true);
    assert!(worker_pod["volumes"].as_array().unwrap().iter().any(|v| v["name"] == "tmp" && v["emptyDir"].is_object()));
}
