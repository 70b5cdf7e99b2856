package engine

import "github.com/switchboard/switchboard/engine/bus"

// busTopics lets scripts publish to and subscribe on the engine's bus.
type busTopics struct{ b *bus.Bus }

func (t busTopics) Publish(topic string, payload any) int { return t.b.Publish(topic, payload) }

func (t busTopics) Subscribe(topic string, deliver func(payload any)) (func(), error) {
	sub, err := t.b.Subscribe(topic, func(m bus.Message) { deliver(m.Payload) })
	if err != nil {
		return nil, err
	}
	return sub.Close, nil
}

// SubscribeNamed is Subscribe that also passes each message's topic (a pattern's subscriber gets the
// topics it matches).
func (t busTopics) SubscribeNamed(topic string, deliver func(topic string, payload any)) (func(), error) {
	sub, err := t.b.Subscribe(topic, func(m bus.Message) { deliver(m.Topic, m.Payload) })
	if err != nil {
		return nil, err
	}
	return sub.Close, nil
}
