// Command kstatus prints the kstatus of Kubernetes objects, as computed by the real library
// (sigs.k8s.io/cli-utils/pkg/kstatus/status.Compute) that Flux, Argo CD and kpt use.
//
// It reads objects from stdin: one object, a List (kubectl get -o json), or YAML documents
// separated by "---". For each object it prints one JSON line:
//
//	{"namespace":"ns","name":"x","kind":"ScriptRun","status":"Current","message":"..."}
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

type line struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	Kind      string `json:"kind"`
	Status    string `json:"status"`
	Message   string `json:"message"`
}

func main() {
	if err := run(os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "kstatus:", err)
		os.Exit(1)
	}
}

func run(in io.Reader, out io.Writer) error {
	decoder := yaml.NewYAMLOrJSONDecoder(in, 4096)
	encoder := json.NewEncoder(out)
	for {
		var raw json.RawMessage
		if err := decoder.Decode(&raw); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("reading objects from stdin: %w", err)
		}
		if len(raw) == 0 || string(raw) == "null" {
			continue // an empty YAML document
		}
		// UnmarshalJSON reads numbers as int64 where they are whole, as the API machinery does.
		u := &unstructured.Unstructured{}
		if err := u.UnmarshalJSON(raw); err != nil {
			return fmt.Errorf("reading an object from stdin: %w", err)
		}
		objects := []unstructured.Unstructured{*u}
		if u.IsList() {
			list, err := u.ToList()
			if err != nil {
				return fmt.Errorf("reading a %s: %w", u.GetKind(), err)
			}
			objects = list.Items
		}
		for i := range objects {
			o := &objects[i]
			result, err := status.Compute(o)
			if err != nil {
				return fmt.Errorf("computing the status of %s %s/%s: %w",
					o.GetKind(), o.GetNamespace(), o.GetName(), err)
			}
			if err := encoder.Encode(line{
				Namespace: o.GetNamespace(),
				Name:      o.GetName(),
				Kind:      o.GetKind(),
				Status:    result.Status.String(),
				Message:   result.Message,
			}); err != nil {
				return err
			}
		}
	}
}
