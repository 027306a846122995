package consumer

import (
	"encoding/json"
	"slices"
	"sort"
	"sync"

	"github.com/segmentio/kafka-go"
)

// stickyBalancer is a kafka-go GroupBalancer that keeps every partition with
// the member that owns it where the balance allows, and spreads the rest.
// Each member tells the group leader what it owns in its JoinGroup user
// data; partitions that come back to their owner keep their in-flight
// records (see runGeneration), so a rebalance replays only the partitions
// that actually moved.
//
// The consumer offers it first and kafka-go's range balancer second, so a
// group that still has members of an older release (range only) keeps
// working with range until they are gone.
type stickyBalancer struct {
	mu    sync.Mutex
	owned stickyData
}

// stickyData is the user data: the generation in which the member got its
// partitions, and the partitions by topic. When two members claim a
// partition (one was evicted and has not noticed yet), the claim of the
// later generation wins.
type stickyData struct {
	Generation int32            `json:"generation"`
	Owned      map[string][]int `json:"owned,omitempty"`
}

const stickyProtocol = "produktly-sticky"

func (b *stickyBalancer) ProtocolName() string { return stickyProtocol }

// UserData reports what this member owns now.
func (b *stickyBalancer) UserData() ([]byte, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return json.Marshal(b.owned)
}

// own records the partitions of topic this member holds as of generation.
func (b *stickyBalancer) own(generation int32, topic string, partitions []int) {
	b.ownTopics(generation, map[string][]int{topic: partitions})
}

// ownTopics records the partitions, by topic, this member holds as of
// generation (the source and the retry topic in accounts mode).
func (b *stickyBalancer) ownTopics(generation int32, owned map[string][]int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	d := stickyData{Generation: generation, Owned: make(map[string][]int, len(owned))}
	for t, ps := range owned {
		d.Owned[t] = slices.Clone(ps)
	}
	b.owned = d
}

// AssignGroups is run by the group leader. Per topic, each member may keep
// up to its quota (partitions/members, the remainder going one each to the
// members that own the most) of what it owns; every other partition goes to
// the members below their quota, fewest first.
func (b *stickyBalancer) AssignGroups(members []kafka.GroupMember, partitions []kafka.Partition) kafka.GroupMemberAssignments {
	out := kafka.GroupMemberAssignments{}
	claims := make(map[string]stickyData, len(members))
	for _, m := range members {
		out[m.ID] = map[string][]int{}
		var d stickyData
		if len(m.UserData) > 0 && json.Unmarshal(m.UserData, &d) != nil {
			d = stickyData{} // unreadable: the member owns nothing
		}
		claims[m.ID] = d
	}
	byTopic := map[string][]int{}
	for _, p := range partitions {
		byTopic[p.Topic] = append(byTopic[p.Topic], p.ID)
	}
	for topic, ids := range byTopic {
		var subs []string
		for _, m := range members {
			if slices.Contains(m.Topics, topic) {
				subs = append(subs, m.ID)
			}
		}
		if len(subs) == 0 {
			continue
		}
		for id, ps := range assignSticky(topic, ids, subs, claims) {
			if len(ps) > 0 {
				out[id][topic] = ps
			}
		}
	}
	return out
}

// assignSticky assigns the partitions ids of one topic to members.
func assignSticky(topic string, ids []int, members []string, claims map[string]stickyData) map[string][]int {
	sort.Ints(ids)
	sort.Strings(members)
	exists := make(map[int]bool, len(ids))
	for _, id := range ids {
		exists[id] = true
	}
	// owner of each claimed partition: the claim of the latest generation,
	// ties to the first member in order.
	owner := map[int]string{}
	for _, m := range members {
		for _, id := range claims[m].Owned[topic] {
			if !exists[id] {
				continue
			}
			if prev, ok := owner[id]; !ok || claims[m].Generation > claims[prev].Generation {
				owner[id] = m
			}
		}
	}
	kept := map[string][]int{}
	for _, id := range ids {
		if m, ok := owner[id]; ok {
			kept[m] = append(kept[m], id)
		}
	}
	// Quotas: the members that own the most get the remainder's extra one.
	order := slices.Clone(members)
	sort.SliceStable(order, func(i, j int) bool { return len(kept[order[i]]) > len(kept[order[j]]) })
	base, extra := len(ids)/len(members), len(ids)%len(members)
	quota := map[string]int{}
	for i, m := range order {
		quota[m] = base
		if i < extra {
			quota[m]++
		}
	}
	out := make(map[string][]int, len(members))
	taken := map[int]bool{}
	for _, m := range members {
		k := kept[m]
		if len(k) > quota[m] {
			k = k[:quota[m]]
		}
		out[m] = append(out[m], k...)
		for _, id := range k {
			taken[id] = true
		}
	}
	for _, id := range ids {
		if taken[id] {
			continue
		}
		// the member furthest below its quota, first in order on ties
		best := ""
		for _, m := range members {
			if len(out[m]) >= quota[m] {
				continue
			}
			if best == "" || quota[m]-len(out[m]) > quota[best]-len(out[best]) {
				best = m
			}
		}
		out[best] = append(out[best], id)
	}
	for _, m := range members {
		sort.Ints(out[m])
	}
	return out
}
