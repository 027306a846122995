package consumer

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"slices"
	"sort"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
)

// member is one group member as the sticky balancer's leader sees it.
type member struct {
	id    string
	gen   int32
	owned []int
}

func assign(t *testing.T, topic string, partitions int, ms []member) map[string][]int {
	t.Helper()
	var gms []kafka.GroupMember
	for _, m := range ms {
		b := &stickyBalancer{}
		if m.owned != nil {
			b.own(m.gen, topic, m.owned)
		}
		ud, err := b.UserData()
		if err != nil {
			t.Fatal(err)
		}
		gms = append(gms, kafka.GroupMember{ID: m.id, Topics: []string{topic}, UserData: ud})
	}
	var ps []kafka.Partition
	for i := range partitions {
		ps = append(ps, kafka.Partition{Topic: topic, ID: i})
	}
	out := (&stickyBalancer{}).AssignGroups(gms, ps)
	got := map[string][]int{}
	seen := map[int]string{}
	for id, byTopic := range out {
		for _, p := range byTopic[topic] {
			if prev, dup := seen[p]; dup {
				t.Fatalf("partition %d assigned to %s and %s", p, prev, id)
			}
			seen[p] = id
		}
		got[id] = byTopic[topic]
	}
	if len(seen) != partitions {
		t.Fatalf("%d of %d partitions assigned: %v", len(seen), partitions, got)
	}
	lo, hi := partitions, 0
	for _, m := range ms {
		lo, hi = min(lo, len(got[m.id])), max(hi, len(got[m.id]))
	}
	if hi-lo > 1 {
		t.Fatalf("unbalanced: %v", got)
	}
	return got
}

// moved counts the partitions whose owner changed.
func moved(before, after map[string][]int) int {
	owner := map[int]string{}
	for id, ps := range before {
		for _, p := range ps {
			owner[p] = id
		}
	}
	n := 0
	for id, ps := range after {
		for _, p := range ps {
			if o, ok := owner[p]; ok && o != id {
				n++
			}
		}
	}
	return n
}

func TestStickyKeepsOwners(t *testing.T) {
	tests := []struct {
		name    string
		members []member
		keep    map[string][]int // each member keeps at least these
	}{
		{"first generation: range-like spread", []member{{id: "a"}, {id: "b"}, {id: "c"}}, nil},
		{"unchanged group keeps everything", []member{
			{"a", 1, []int{0, 4, 8, 9}}, {"b", 1, []int{1, 5, 6, 10}}, {"c", 1, []int{2, 3, 7, 11}}},
			map[string][]int{"a": {0, 4, 8, 9}, "b": {1, 5, 6, 10}, "c": {2, 3, 7, 11}}},
		{"a member left: the others keep theirs and share its partitions", []member{
			{"a", 1, []int{0, 1, 2, 3}}, {"c", 1, []int{8, 9, 10, 11}}},
			map[string][]int{"a": {0, 1, 2, 3}, "c": {8, 9, 10, 11}}},
		{"a member joined: it takes one from each over quota", []member{
			{"a", 1, []int{0, 1, 2, 3, 4, 5}}, {"c", 1, []int{6, 7, 8, 9, 10, 11}}, {"d", 0, nil}},
			map[string][]int{"a": {0, 1, 2, 3}, "c": {6, 7, 8, 9}}},
		{"a stale claim loses to a later generation", []member{
			{"a", 3, []int{0, 1, 2, 3, 4, 5}}, {"b", 1, []int{0, 1, 2}}, {"c", 3, []int{6, 7, 8, 9, 10, 11}}},
			map[string][]int{"a": {0, 1, 2, 3}, "c": {6, 7, 8, 9}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := assign(t, "src", 12, tt.members)
			for id, keep := range tt.keep {
				for _, p := range keep {
					if !slices.Contains(got[id], p) {
						t.Errorf("%s lost partition %d: got %v (all: %v)", id, p, got[id], got)
					}
				}
			}
		})
	}
}

// TestStickyRollingRestart restarts 3 members one after the other (each
// leaves, then comes back with a new member id and nothing owned): only the
// restarted member's partitions move, twice, and the others never lose
// more than the balance needs.
func TestStickyRollingRestart(t *testing.T) {
	const parts = 12
	gen := int32(1)
	cur := assign(t, "src", parts, []member{{id: "a"}, {id: "b"}, {id: "c"}})
	ids := []string{"a", "b", "c"}
	for i := range ids {
		// i leaves
		var ms []member
		for _, id := range ids {
			if id != ids[i] {
				ms = append(ms, member{id, gen, cur[id]})
			}
		}
		gen++
		after := assign(t, "src", parts, ms)
		if n, want := moved(cur, after), len(cur[ids[i]]); n != want {
			t.Errorf("restart %s, leave: %d partitions moved, want %d (only the leaver's)", ids[i], n, want)
		}
		cur = after
		// it comes back as a new member
		ids[i] += "'"
		ms = ms[:0]
		for _, id := range ids {
			ms = append(ms, member{id, gen, cur[id]})
		}
		gen++
		after = assign(t, "src", parts, ms)
		if n := moved(cur, after); n != parts/3 {
			t.Errorf("restart %s, join: %d partitions moved, want %d (just its share)", ids[i], n, parts/3)
		}
		cur = after
	}
}

func TestStickyUserDataRoundTrip(t *testing.T) {
	b := &stickyBalancer{}
	b.own(7, "src", []int{3, 1})
	ud, err := b.UserData()
	if err != nil {
		t.Fatal(err)
	}
	var d stickyData
	if err := json.Unmarshal(ud, &d); err != nil {
		t.Fatal(err)
	}
	got := d.Owned["src"]
	sort.Ints(got)
	if d.Generation != 7 || fmt.Sprint(got) != "[1 3]" {
		t.Errorf("user data %s", ud)
	}
	// Unreadable user data (another protocol's) owns nothing.
	out := b.AssignGroups([]kafka.GroupMember{{ID: "x", Topics: []string{"src"}, UserData: []byte("\x00\x01")}},
		[]kafka.Partition{{Topic: "src", ID: 0}})
	if fmt.Sprint(out["x"]["src"]) != "[0]" {
		t.Errorf("assignments %v", out)
	}
}

// TestGroupConnsCutPendingRequest: a request the coordinator holds (a
// JoinGroup waiting out a dead member's session) ends at once when the
// group is closed, and no connection is dialled after shutdown began.
func TestGroupConnsCutPendingRequest(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 4)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				close(accepted)
				return
			}
			accepted <- c // never answers
		}
	}()
	shutdown, begin := context.WithCancel(context.Background())
	g := &groupConns{shutdown: shutdown, dial: (&net.Dialer{}).DialContext}
	conn, err := g.dialContext(context.Background(), "tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server := <-accepted
	defer server.Close()
	read := make(chan error, 1)
	go func() {
		_, err := conn.Read(make([]byte, 1))
		read <- err
	}()
	begin()
	if _, err := g.dialContext(context.Background(), "tcp", ln.Addr().String()); err == nil {
		t.Error("a connection was dialled after shutdown began")
	}
	g.closeAll()
	select {
	case err := <-read:
		if err == nil {
			t.Error("read returned no error on a cut connection")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the pending request was not cut by closeAll")
	}
}

// TestShutdownWhileJoining: Run returns promptly when cancelled while the
// group is still joining (Next pending), and closes the group.
func TestShutdownWhileJoining(t *testing.T) {
	tc := newTestConsumer(t, 1, nil)
	stop := tc.run(t)
	// No generation is ever handed out: the JoinGroup is pending.
	stop()
	select {
	case <-tc.fc.closed:
	default:
		t.Error("the group was not closed")
	}
}

// TestStickyTwoTopics: in accounts mode the member owns partitions of the
// source and the retry topic; both stay with it across a rebalance.
func TestStickyTwoTopics(t *testing.T) {
	a, b := &stickyBalancer{}, &stickyBalancer{}
	a.ownTopics(4, map[string][]int{"src": {0, 1}, "src.retry": {1}})
	b.ownTopics(4, map[string][]int{"src": {2, 3}, "src.retry": {0}})
	udA, _ := a.UserData()
	udB, _ := b.UserData()
	topics := []string{"src", "src.retry"}
	var ps []kafka.Partition
	for i := range 4 {
		ps = append(ps, kafka.Partition{Topic: "src", ID: i})
	}
	ps = append(ps, kafka.Partition{Topic: "src.retry", ID: 0}, kafka.Partition{Topic: "src.retry", ID: 1})
	out := a.AssignGroups([]kafka.GroupMember{
		{ID: "a", Topics: topics, UserData: udA},
		{ID: "b", Topics: topics, UserData: udB},
	}, ps)
	for _, c := range []struct{ member, topic, want string }{
		{"a", "src", "[0 1]"}, {"a", "src.retry", "[1]"}, {"b", "src", "[2 3]"}, {"b", "src.retry", "[0]"},
	} {
		got := append([]int(nil), out[c.member][c.topic]...)
		sort.Ints(got)
		if fmt.Sprint(got) != c.want {
			t.Errorf("%s gets %s %v, want %s (what it owns)", c.member, c.topic, got, c.want)
		}
	}
}
