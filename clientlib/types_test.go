package clientlib

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/tokenagent/tokenagent/ipc"
)

// TestResultTypesKeepEveryWireField: clientlib's own result types read
// every field the agent sends (ipc's wire types, every field set) and
// write it back the same, so that a field added to the wire is not lost
// here unnoticed.
func TestResultTypesKeepEveryWireField(t *testing.T) {
	for _, c := range []struct {
		wire, own any
	}{
		{&ipc.HealthResponse{}, &Health{}},
		{&ipc.ProfileInfo{}, &ProfileStatus{}},
	} {
		fill(reflect.ValueOf(c.wire).Elem())
		sent, err := json.Marshal(c.wire)
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(sent, c.own); err != nil {
			t.Fatal(err)
		}
		back, _ := json.Marshal(c.own)
		var want, got map[string]any
		json.Unmarshal(sent, &want)
		json.Unmarshal(back, &got)
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%T read from %T and written back = %s, want %s", c.own, c.wire, back, sent)
		}
	}
}

// fill sets every field of v to a non-zero value.
func fill(v reflect.Value) {
	switch v.Kind() {
	case reflect.Struct:
		if v.Type() == reflect.TypeFor[time.Time]() {
			v.Set(reflect.ValueOf(time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)))
			return
		}
		for i := range v.NumField() {
			fill(v.Field(i))
		}
	case reflect.Pointer:
		v.Set(reflect.New(v.Type().Elem()))
		fill(v.Elem())
	case reflect.Slice:
		v.Set(reflect.MakeSlice(v.Type(), 1, 1))
		fill(v.Index(0))
	case reflect.String:
		v.SetString("x")
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Int, reflect.Int64:
		v.SetInt(7)
	case reflect.Uint64:
		v.SetUint(7)
	case reflect.Float64:
		v.SetFloat(7.5)
	}
}
