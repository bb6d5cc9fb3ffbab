// Package cli holds what every Flotilla binary shares on its command line:
// flags that also read environment variables, byte sizes, validation that
// reports every problem at once, and logger setup.
//
// A flag named --data-dir also reads FLOTILLA_DATA_DIR when it is not given
// on the command line; the command line wins. --help prints every flag with
// its environment variable and default. ParseInterleaved lets a command's
// flags come before, between or after its positional arguments ("flotilla
// get KEY --json"), with "--" ending the flags.
package cli
