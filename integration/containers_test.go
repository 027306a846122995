package integration

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/segmentio/kafka-go"
	"github.com/testcontainers/testcontainers-go"
)

// Kafka in containers: when KAFKA_BROKERS is unset and a Docker engine is
// healthy, TestMain starts the broker(s) with testcontainers-go from
// KAFKA_IMAGE (scripts/images.sh kafka builds the project's image; the
// environment follows the apache/kafka convention, so apache/kafka:4.1.2
// works too). Containers use the host network, so every address is on
// loopback, with ports chosen free at start. KAFKA_CLUSTER_NODES=3 starts the
// 3-node cluster the broker faults need; a node's kill and start are a
// container kill and start.
//
// Ryuk is not used (TESTCONTAINERS_RYUK_DISABLED=true: its image cannot be
// pulled everywhere). Every container carries labelTest and labelRun; the
// run removes its own at the end, and removes containers left behind by a
// run whose process is gone (a crashed or killed test binary).

const (
	// defaultKafkaImage is the tag scripts/images.sh kafka gives its image.
	defaultKafkaImage = "produktly-segment-ci/kafka:4.1.2"
	labelTest         = "org.produktly-segment.test"
	labelRun          = "org.produktly-segment.run"
	labelPID          = "org.produktly-segment.pid"
	// scramUser is the SCRAM user the single node's secure listener knows.
	scramUser = "produktly"
	// kafkaClusterID formats every node's storage.
	kafkaClusterID = "cHJvZHVrdGx5LXNlZ21lbnQ"
)

// dockerEnv is the Docker engine the tests use, shared by the Kafka
// containers and the pod rehearsal.
type dockerEnv struct {
	provider *testcontainers.DockerProvider
	run      string // this run's label value
}

// newDockerEnv connects to the engine with the host network as the default
// network (no bridge is created or attached), and removes what earlier runs
// left behind.
func newDockerEnv(ctx context.Context) (*dockerEnv, error) {
	if os.Getenv("TESTCONTAINERS_RYUK_DISABLED") == "" {
		os.Setenv("TESTCONTAINERS_RYUK_DISABLED", "true")
	}
	p, err := newDockerProvider()
	if err != nil {
		return nil, err
	}
	hctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := p.Health(hctx); err != nil {
		return nil, fmt.Errorf("docker not healthy: %w", err)
	}
	run := os.Getenv("PRODUKTLY_TEST_RUN")
	if run == "" {
		b := make([]byte, 4)
		_, _ = rand.Read(b)
		run = hex.EncodeToString(b)
	}
	d := &dockerEnv{provider: p, run: run}
	d.removeOrphans(ctx)
	return d, nil
}

// newDockerProvider is testcontainers-go's provider on the host network.
// testcontainers-go panics ("rootless Docker not found") when it finds no
// Docker host at all: no DOCKER_HOST, no socket file. That is a machine
// without an engine, the jar path's machine, and an engine that another
// process stops and starts leaves the socket missing for a while: an
// error here, so that the tests use KAFKA_BROKERS or skip as they would
// with an unhealthy engine.
func newDockerProvider() (p *testcontainers.DockerProvider, err error) {
	defer func() {
		if r := recover(); r != nil {
			p, err = nil, fmt.Errorf("no Docker engine found: %v", r)
		}
	}()
	p, err = testcontainers.NewDockerProvider(testcontainers.WithDefaultBridgeNetwork("host"))
	if err != nil {
		return nil, fmt.Errorf("docker provider: %w", err)
	}
	return p, nil
}

// removeOrphans removes test containers whose test process no longer runs.
func (d *dockerEnv) removeOrphans(ctx context.Context) {
	list, err := d.provider.Client().ContainerList(ctx, container.ListOptions{
		All: true, Filters: filters.NewArgs(filters.Arg("label", labelTest)),
	})
	if err != nil {
		return
	}
	for _, c := range list {
		pid, err := strconv.Atoi(c.Labels[labelPID])
		if err == nil && pid > 0 && syscall.Kill(pid, 0) == nil {
			continue // its run is alive (possibly another package's test binary)
		}
		_ = d.provider.Client().ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true, RemoveVolumes: true})
	}
}

// removeAll removes every container this process started in this run (a
// run's other test processes, such as the one TestHoldKafka runs in, keep
// theirs).
func (d *dockerEnv) removeAll(ctx context.Context) {
	list, err := d.provider.Client().ContainerList(ctx, container.ListOptions{
		All: true, Filters: filters.NewArgs(filters.Arg("label", labelRun+"="+d.run),
			filters.Arg("label", labelPID+"="+strconv.Itoa(os.Getpid()))),
	})
	if err != nil {
		return
	}
	for _, c := range list {
		_ = d.provider.Client().ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true, RemoveVolumes: true})
	}
}

// labels are the labels of a container of this run.
func (d *dockerEnv) labels(role string) map[string]string {
	return map[string]string{labelTest: role, labelRun: d.run, labelPID: strconv.Itoa(os.Getpid())}
}

// imageInfo names an image and its Kafka version label, if any.
func (d *dockerEnv) imageInfo(ctx context.Context, image string) (string, error) {
	ins, _, err := d.provider.Client().ImageInspectWithRaw(ctx, image)
	if err != nil {
		return "", fmt.Errorf("image %s: %w (build it with scripts/images.sh kafka, or set KAFKA_IMAGE)", image, err)
	}
	if ins.Config != nil {
		if v := ins.Config.Labels["org.apache.kafka.version"]; v != "" {
			return v, nil
		}
		for _, e := range ins.Config.Env { // apache/kafka names no label
			if v, ok := strings.CutPrefix(e, "KAFKA_VERSION="); ok {
				return v, nil
			}
		}
	}
	if _, tag, ok := strings.Cut(image, ":"); ok {
		return tag, nil
	}
	return "unknown", nil
}

// kafkaCluster is the broker(s) TestMain started in containers.
type kafkaCluster struct {
	d       *dockerEnv
	image   string
	version string
	nodes   []*kafkaNode
	// scram is the single node's SASL_SSL listener, or zero.
	scram scramSetting
	dir   string // CA file and other host-side files
}

// kafkaNode is one broker container.
type kafkaNode struct {
	id         int
	c          *testcontainers.DockerContainer
	clientPort int
}

func (n *kafkaNode) addr() string { return fmt.Sprintf("127.0.0.1:%d", n.clientPort) }

// brokers is the bootstrap list of every node.
func (kc *kafkaCluster) brokers() []string {
	var out []string
	for _, n := range kc.nodes {
		out = append(out, n.addr())
	}
	return out
}

// describe is the line the tests print about the broker.
func (kc *kafkaCluster) describe() string {
	shape := "single node"
	if len(kc.nodes) > 1 {
		shape = fmt.Sprintf("%d-node cluster, RF 3, min.insync.replicas 2", len(kc.nodes))
	}
	return fmt.Sprintf("Apache Kafka %s (image %s, %s, testcontainers-go, host network)", kc.version, kc.image, shape)
}

// startKafka starts nodes broker containers of image on free loopback
// ports and waits until each serves its client port. A single node also
// gets a SASL_SSL listener with SCRAM and a CA of its own.
func startKafka(ctx context.Context, d *dockerEnv, image string, nodes int) (_ *kafkaCluster, err error) {
	version, err := d.imageInfo(ctx, image)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "produktly-kafka-")
	if err != nil {
		return nil, err
	}
	kc := &kafkaCluster{d: d, image: image, version: version, dir: dir}
	defer func() {
		if err != nil {
			kc.stop(context.Background())
		}
	}()
	ports, err := freePorts(nodes*2 + 1)
	if err != nil {
		return nil, err
	}
	client := func(n int) int { return ports[2*(n-1)] }
	ctrl := func(n int) int { return ports[2*(n-1)+1] }
	securePort := ports[2*nodes]

	var voters []string
	for n := 1; n <= nodes; n++ {
		voters = append(voters, fmt.Sprintf("%d@127.0.0.1:%d", n, ctrl(n)))
	}
	rf, isr := "1", "1"
	if nodes >= 3 {
		rf, isr = "3", "2"
	}
	var serverPEM []byte
	if nodes == 1 {
		var caFile string
		serverPEM, caFile, err = makeTLS(dir)
		if err != nil {
			return nil, fmt.Errorf("tls: %w", err)
		}
		pw := make([]byte, 12)
		_, _ = rand.Read(pw)
		kc.scram = scramSetting{addr: fmt.Sprintf("127.0.0.1:%d", securePort), caFile: caFile, user: scramUser, password: hex.EncodeToString(pw)}
	}
	for n := 1; n <= nodes; n++ {
		env := map[string]string{
			"CLUSTER_ID":                                             kafkaClusterID,
			"KAFKA_NODE_ID":                                          strconv.Itoa(n),
			"KAFKA_PROCESS_ROLES":                                    "broker,controller",
			"KAFKA_LISTENERS":                                        fmt.Sprintf("PLAINTEXT://127.0.0.1:%d,CONTROLLER://127.0.0.1:%d", client(n), ctrl(n)),
			"KAFKA_ADVERTISED_LISTENERS":                             fmt.Sprintf("PLAINTEXT://127.0.0.1:%d", client(n)),
			"KAFKA_LISTENER_SECURITY_PROTOCOL_MAP":                   "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
			"KAFKA_CONTROLLER_LISTENER_NAMES":                        "CONTROLLER",
			"KAFKA_INTER_BROKER_LISTENER_NAME":                       "PLAINTEXT",
			"KAFKA_CONTROLLER_QUORUM_VOTERS":                         strings.Join(voters, ","),
			"KAFKA_LOG_DIRS":                                         "/tmp/kraft-combined-logs",
			"KAFKA_NUM_PARTITIONS":                                   "1",
			"KAFKA_DEFAULT_REPLICATION_FACTOR":                       rf,
			"KAFKA_MIN_INSYNC_REPLICAS":                              isr,
			"KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR":                 rf,
			"KAFKA_OFFSETS_TOPIC_NUM_PARTITIONS":                     "3",
			"KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR":         rf,
			"KAFKA_TRANSACTION_STATE_LOG_MIN_ISR":                    isr,
			"KAFKA_TRANSACTION_STATE_LOG_NUM_PARTITIONS":             "3",
			"KAFKA_SHARE_COORDINATOR_STATE_TOPIC_REPLICATION_FACTOR": rf,
			"KAFKA_SHARE_COORDINATOR_STATE_TOPIC_MIN_ISR":            isr,
			"KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS":                 "0",
			"KAFKA_AUTO_CREATE_TOPICS_ENABLE":                        "false",
			"KAFKA_DELETE_TOPIC_ENABLE":                              "true",
			"KAFKA_MESSAGE_MAX_BYTES":                                "1048588",
			"KAFKA_LOG_SEGMENT_BYTES":                                "104857600",
			"KAFKA_HEAP_OPTS":                                        "-Xms512m -Xmx1g",
		}
		var files []testcontainers.ContainerFile
		if nodes == 1 {
			// The listener is named SECURE, not SASL_SSL: apache/kafka's
			// start script takes "SSL://" in the advertised listeners as a
			// request for JKS keystores, and this one uses PEM.
			env["KAFKA_LISTENERS"] += fmt.Sprintf(",SECURE://127.0.0.1:%d", securePort)
			env["KAFKA_ADVERTISED_LISTENERS"] += fmt.Sprintf(",SECURE://127.0.0.1:%d", securePort)
			env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"] += ",SECURE:SASL_SSL"
			env["KAFKA_SASL_ENABLED_MECHANISMS"] = "SCRAM-SHA-512,SCRAM-SHA-256"
			env["KAFKA_LISTENER_NAME_SECURE_SCRAM___SHA___512_SASL_JAAS_CONFIG"] = "org.apache.kafka.common.security.scram.ScramLoginModule required;"
			env["KAFKA_LISTENER_NAME_SECURE_SCRAM___SHA___256_SASL_JAAS_CONFIG"] = "org.apache.kafka.common.security.scram.ScramLoginModule required;"
			env["KAFKA_SSL_KEYSTORE_TYPE"] = "PEM"
			env["KAFKA_SSL_KEYSTORE_LOCATION"] = "/tmp/tls/server.pem"
			env["KAFKA_SSL_CLIENT_AUTH"] = "none"
			files = append(files, testcontainers.ContainerFile{
				Reader: bytes.NewReader(serverPEM), ContainerFilePath: "/tmp/tls/server.pem", FileMode: 0o644,
			})
		}
		req := testcontainers.ContainerRequest{
			Image:  image,
			Name:   fmt.Sprintf("produktly-kafka-%s-%d", d.run, n),
			Env:    env,
			Labels: d.labels("kafka"),
			Files:  files,
			HostConfigModifier: func(hc *container.HostConfig) {
				hc.NetworkMode = "host"
			},
		}
		c, err := d.provider.CreateContainer(ctx, req)
		if err != nil {
			return nil, fmt.Errorf("kafka node %d: %w", n, err)
		}
		dc, ok := c.(*testcontainers.DockerContainer)
		if !ok {
			return nil, fmt.Errorf("kafka node %d: unexpected container type %T", n, c)
		}
		kc.nodes = append(kc.nodes, &kafkaNode{id: n, c: dc, clientPort: client(n)})
	}
	// All nodes start before any is waited for: a quorum of three needs two.
	for _, n := range kc.nodes {
		if err := n.c.Start(ctx); err != nil {
			return nil, fmt.Errorf("kafka node %d: start: %w", n.id, err)
		}
	}
	for _, n := range kc.nodes {
		if err := kc.waitNode(ctx, n, 3*time.Minute); err != nil {
			return nil, err
		}
	}
	if nodes == 1 {
		if err := kc.addScramUser(ctx); err != nil {
			return nil, err
		}
	}
	return kc, nil
}

// waitNode waits until node n answers an ApiVersions request on its client
// port (the port opens only once the broker is unfenced), or its container
// exits, or timeout passes.
func (kc *kafkaCluster) waitNode(ctx context.Context, n *kafkaNode, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	client := &kafka.Client{Addr: kafka.TCP(n.addr()), Timeout: 5 * time.Second}
	for {
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := client.ApiVersions(rctx, &kafka.ApiVersionsRequest{})
		cancel()
		if err == nil {
			return nil
		}
		st, serr := n.c.State(ctx)
		if serr == nil && !st.Running {
			return fmt.Errorf("kafka node %d exited (code %d) before serving %s:\n%s", n.id, st.ExitCode, n.addr(), kc.logTail(ctx, n, 40))
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("kafka node %d not serving %s after %s: %v\n%s", n.id, n.addr(), timeout, err, kc.logTail(ctx, n, 40))
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// logTail is the end of node n's container log.
func (kc *kafkaCluster) logTail(ctx context.Context, n *kafkaNode, lines int) string {
	return containerLogTail(ctx, n.c, lines)
}

// containerLogTail is the last lines of c's log (stdout and stderr).
func containerLogTail(ctx context.Context, c *testcontainers.DockerContainer, lines int) string {
	r, err := c.Logs(ctx)
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	defer r.Close()
	b, _ := io.ReadAll(r)
	all := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(all[max(0, len(all)-lines):], "\n")
}

// addScramUser creates the SCRAM credentials over the plaintext listener,
// the way an operator would with kafka-configs, so any image works. Kafka
// takes one change per user and request, so each mechanism is its own.
func (kc *kafkaCluster) addScramUser(ctx context.Context) error {
	client := &kafka.Client{Addr: kafka.TCP(kc.brokers()...), Timeout: 30 * time.Second}
	for _, mech := range []kafka.ScramMechanism{kafka.ScramMechanismSha512, kafka.ScramMechanismSha256} {
		salt := make([]byte, 16)
		_, _ = rand.Read(salt)
		up := kafka.UserScramCredentialsUpsertion{
			Name: kc.scram.user, Mechanism: mech, Iterations: 4096, Salt: salt, SaltedPassword: saltedPassword(mech, kc.scram.password, salt, 4096),
		}
		deadline := time.Now().Add(60 * time.Second)
		for {
			rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			res, err := client.AlterUserScramCredentials(rctx, &kafka.AlterUserScramCredentialsRequest{Upsertions: []kafka.UserScramCredentialsUpsertion{up}})
			cancel()
			if err == nil {
				for _, r := range res.Results {
					if r.Error != nil {
						err = fmt.Errorf("user %s: %w", r.User, r.Error)
					}
				}
			}
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("create SCRAM user: %w", err)
			}
			time.Sleep(500 * time.Millisecond)
		}
	}
	return nil
}

// node returns the container of node id.
func (kc *kafkaCluster) node(id int) (*kafkaNode, error) {
	for _, n := range kc.nodes {
		if n.id == id {
			return n, nil
		}
	}
	return nil, fmt.Errorf("no kafka node %d", id)
}

// kill sends SIGKILL to node id's container.
func (kc *kafkaCluster) kill(ctx context.Context, id int) error {
	n, err := kc.node(id)
	if err != nil {
		return err
	}
	if err := kc.d.provider.Client().ContainerKill(ctx, n.c.GetContainerID(), "KILL"); err != nil {
		return fmt.Errorf("kill kafka node %d: %w", id, err)
	}
	// Wait until the engine reports it stopped, so a start that follows
	// does not race the kill.
	deadline := time.Now().Add(time.Minute)
	for {
		st, err := n.c.State(ctx)
		if err == nil && !st.Running {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("kafka node %d still running a minute after SIGKILL", id)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// start starts node id's container again (same storage) and waits for it.
func (kc *kafkaCluster) start(ctx context.Context, id int) error {
	n, err := kc.node(id)
	if err != nil {
		return err
	}
	if err := n.c.Start(ctx); err != nil {
		return fmt.Errorf("start kafka node %d: %w", id, err)
	}
	return kc.waitNode(ctx, n, 3*time.Minute)
}

// stop removes the containers and the host-side files.
func (kc *kafkaCluster) stop(ctx context.Context) {
	for _, n := range kc.nodes {
		_ = n.c.Terminate(ctx, testcontainers.StopTimeout(10*time.Second))
	}
	if kc.dir != "" {
		_ = os.RemoveAll(kc.dir)
	}
}

// freePorts returns n loopback ports nobody listened on a moment ago.
func freePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			_ = l.Close()
		}
	}()
	var out []int
	for i := 0; i < n; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		out = append(out, l.Addr().(*net.TCPAddr).Port)
	}
	return out, nil
}

// makeTLS writes a CA certificate to dir/ca.crt and returns the broker's
// PEM keystore (unencrypted PKCS#8 key, then its certificate for 127.0.0.1
// and localhost) and the CA file's path.
func makeTLS(dir string) (keystore []byte, caFile string, err error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, "", err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "produktly-test-ca"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(48 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, "", err
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, "", err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, "", err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(48 * time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, DNSNames: []string{"localhost"},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return nil, "", err
	}
	pk8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, "", err
	}
	var ks bytes.Buffer
	_ = pem.Encode(&ks, &pem.Block{Type: "PRIVATE KEY", Bytes: pk8})
	_ = pem.Encode(&ks, &pem.Block{Type: "CERTIFICATE", Bytes: der})
	caFile = filepath.Join(dir, "ca.crt")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o644); err != nil {
		return nil, "", err
	}
	return ks.Bytes(), caFile, nil
}

// saltedPassword is SCRAM's Hi(password, salt, iterations) (RFC 5802) for
// mech, the credential Kafka stores.
func saltedPassword(mech kafka.ScramMechanism, password string, salt []byte, iterations int) []byte {
	h, size := sha512.New, sha512.Size
	if mech == kafka.ScramMechanismSha256 {
		h, size = sha256.New, sha256.Size
	}
	k, err := pbkdf2.Key(h, password, salt, iterations, size)
	if err != nil {
		panic(err) // only for invalid parameters, which are constants here
	}
	return k
}
