package commands

import (
	"fmt"
	"slices"
	"strings"
	"sync"
)

// kind is a Key's Type, resolved once.
type kind uint8

const (
	kindString kind = iota + 1
	kindInteger
	kindReal
	kindBoolean
	kindDate
	kindData
	kindDictionary
	kindArray
	kindAny
)

// kinds maps Key.Type spellings to kinds.
var kinds = map[string]kind{
	"string": kindString, "integer": kindInteger, "real": kindReal,
	"boolean": kindBoolean, "date": kindDate, "data": kindData,
	"dictionary": kindDictionary, "array": kindArray, "any": kindAny,
}

// node is a Key compiled for validation: its kind, its enumeration as a
// set, a dictionary's keys by name, an array's item types and how to pick
// one.
type node struct {
	key  *Key
	kind kind
	// allowed is the set of AllowedValues (scalars, so comparable).
	allowed map[any]struct{}
	// free says a dictionary or array for which the schema lists no keys:
	// its content is converted as <any>.
	free bool
	// fields are a dictionary's named keys, anyKey its "ANY…" key, and
	// required the names of its required keys, sorted.
	fields   map[string]*node
	anyKey   *node
	required []string
	// items are an array's item types. With several, disc names the key
	// that tells them apart and byDisc maps its values to item types;
	// without one (disc empty) they are tried in order.
	items  []*node
	disc   string
	byDisc map[string]*node
}

// anyNode converts free content.
var anyNode = &node{key: &Key{Type: "any"}, kind: kindAny}

// commandNode is a compiled Spec: its command dictionary's keys.
type commandNode struct {
	spec *Spec
	root *node
}

// catalog is a compiled list of Specs, sorted by RequestType.
type catalog struct {
	commands []commandNode
}

// defaultCatalog is the catalog of the generated specs, compiled on first
// use. The generated table is checked by the tests, so a failure here is a
// generator bug and panics.
var defaultCatalog = sync.OnceValue(func() *catalog {
	c, err := newCatalog(specs)
	if err != nil {
		panic("commands: generated specs: " + err.Error())
	}
	return c
})

// newCatalog compiles specs, which must be sorted by RequestType without
// repeats.
func newCatalog(specs []Spec) (*catalog, error) {
	c := &catalog{commands: make([]commandNode, len(specs))}
	for i := range specs {
		s := &specs[i]
		if s.RequestType == "" {
			return nil, fmt.Errorf("spec %d has no RequestType", i)
		}
		if i > 0 && specs[i-1].RequestType >= s.RequestType {
			return nil, fmt.Errorf("specs not sorted at %q", s.RequestType)
		}
		root, err := compile(&Key{Name: s.RequestType, Type: "dictionary", Keys: s.Keys}, s.RequestType)
		if err != nil {
			return nil, err
		}
		if _, ok := root.fields["RequestType"]; ok {
			return nil, fmt.Errorf("%s lists RequestType as a payload key", s.RequestType)
		}
		root.free = false // a command without keys takes none
		c.commands[i] = commandNode{spec: s, root: root}
	}
	return c, nil
}

// lookup finds requestType, exactly.
func (c *catalog) lookup(requestType string) (*commandNode, bool) {
	i, ok := slices.BinarySearchFunc(c.commands, requestType, func(n commandNode, t string) int {
		return strings.Compare(n.spec.RequestType, t)
	})
	if !ok {
		return nil, false
	}
	return &c.commands[i], true
}

// compile builds the node of k; path names it in errors.
func compile(k *Key, path string) (*node, error) {
	n := &node{key: k, kind: kinds[k.Type]}
	if n.kind == 0 {
		return nil, fmt.Errorf("%s: unknown type %q", path, k.Type)
	}
	if len(k.AllowedValues) > 0 {
		n.allowed = make(map[any]struct{}, len(k.AllowedValues))
		for _, v := range k.AllowedValues {
			if !allowedType(n.kind, v) {
				return nil, fmt.Errorf("%s: allowed value %#v is not a %s", path, v, k.Type)
			}
			n.allowed[v] = struct{}{}
		}
	}
	if (k.Min != nil || k.Max != nil) && n.kind != kindInteger && n.kind != kindReal {
		return nil, fmt.Errorf("%s: bounds on a %s", path, k.Type)
	}
	switch n.kind {
	case kindDictionary:
		return n, n.compileDictionary(path)
	case kindArray:
		return n, n.compileArray(path)
	}
	if len(k.Keys) > 0 {
		return nil, fmt.Errorf("%s: keys on a %s", path, k.Type)
	}
	return n, nil
}

// allowedType reports whether v, an allowed value, has the Go type a key
// of kind k converts to. Only scalars can be enumerated.
func allowedType(k kind, v any) bool {
	switch v.(type) {
	case string:
		return k == kindString
	case int64:
		return k == kindInteger
	case float64:
		return k == kindReal
	case bool:
		return k == kindBoolean
	}
	return false
}

func (n *node) compileDictionary(path string) error {
	if len(n.key.Keys) == 0 {
		n.free = true
		return nil
	}
	n.fields = make(map[string]*node, len(n.key.Keys))
	for i := range n.key.Keys {
		k := &n.key.Keys[i]
		sub, err := compile(k, path+"."+k.Name)
		if err != nil {
			return err
		}
		if strings.HasPrefix(k.Name, "ANY") {
			if n.anyKey != nil {
				return fmt.Errorf("%s: two ANY keys", path)
			}
			n.anyKey = sub
			continue
		}
		if _, dup := n.fields[k.Name]; dup {
			return fmt.Errorf("%s: key %q twice", path, k.Name)
		}
		n.fields[k.Name] = sub
		if k.Required {
			n.required = append(n.required, k.Name)
		}
	}
	slices.Sort(n.required)
	return nil
}

func (n *node) compileArray(path string) error {
	if len(n.key.Keys) == 0 {
		n.free = true
		return nil
	}
	for i := range n.key.Keys {
		k := &n.key.Keys[i]
		sub, err := compile(k, path+"."+k.Name)
		if err != nil {
			return err
		}
		n.items = append(n.items, sub)
	}
	if len(n.items) > 1 {
		n.disc, n.byDisc = discriminator(n.items)
	}
	return nil
}

// discriminator finds the key that tells an array's item types apart: one
// every item type is a dictionary with, required, a string enumeration of
// exactly one value, a different value in each. It returns "" when there
// is none.
func discriminator(items []*node) (string, map[string]*node) {
	first := items[0]
	if first.kind != kindDictionary {
		return "", nil
	}
	for _, name := range first.required {
		byValue := make(map[string]*node, len(items))
		for _, item := range items {
			v, ok := onlyValue(item, name)
			if !ok {
				break
			}
			if _, dup := byValue[v]; dup {
				break
			}
			byValue[v] = item
		}
		if len(byValue) == len(items) {
			return name, byValue
		}
	}
	return "", nil
}

// onlyValue returns the one allowed value of item's required string key
// name, if item is a dictionary with such a key.
func onlyValue(item *node, name string) (string, bool) {
	if item.kind != kindDictionary || !slices.Contains(item.required, name) {
		return "", false
	}
	f := item.fields[name]
	if f.kind != kindString || len(f.key.AllowedValues) != 1 {
		return "", false
	}
	s, ok := f.key.AllowedValues[0].(string)
	return s, ok
}

// bound returns a pointer to f, for the Min and Max of generated Keys.
func bound(f float64) *float64 { return &f }
