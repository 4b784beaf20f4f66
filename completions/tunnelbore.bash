# Bash completion for tunnelbore: commands, each command's flags, and WireGuard interface names for
# --interface. Install: copy to /usr/share/bash-completion/completions/tunnelbore (or
# ~/.local/share/bash-completion/completions/tunnelbore), or source it from ~/.bashrc.
# The flag lists follow each command's --help (test/e2e/packaging.test.ts checks that none is missing).

_tunnelbore_wireguard_interfaces() {
  local names
  names=$(wg show interfaces 2>/dev/null)
  # wg needs CAP_NET_ADMIN; ip lists WireGuard links to anyone.
  [[ -z $names ]] && names=$(ip -o link show type wireguard 2>/dev/null | awk -F': ' '{ sub(/@.*/, "", $2); print $2 }')
  printf '%s\n' $names
}

_tunnelbore() {
  local cur prev words cword
  if declare -F _init_completion >/dev/null; then
    _init_completion || return
  else
    COMPREPLY=()
    cur=${COMP_WORDS[COMP_CWORD]}
    prev=${COMP_WORDS[COMP_CWORD - 1]}
    words=("${COMP_WORDS[@]}")
    cword=$COMP_CWORD
  fi

  local commands="run intro-server status release ping netcheck help"
  local command="" i
  for ((i = 1; i < cword; i++)); do
    case ${words[i]} in
      -*) ;;
      *) command=${words[i]}; break ;;
    esac
  done

  if [[ -z $command ]]; then
    COMPREPLY=($(compgen -W "$commands --help -h --version -v" -- "$cur"))
    return
  fi

  local flags
  case $command in
    help)
      [[ $cword -eq $((i + 1)) ]] && COMPREPLY=($(compgen -W "run intro-server status release ping netcheck" -- "$cur"))
      return
      ;;
    run)
      flags="--config --interface -i --intro --stun --turn --turn-username --turn-password-file --turn-password
        --exclude-interface --listen --loopback-port-base --no-manage-endpoints --ebpf --endpoint
        --state-dir --wait-for-interface --no-wait-for-interface --wg-quick-config --poll-interval --idle-timeout
        --metrics --run-dir --log-level --log-format --user --no-privsep --help -h"
      ;;
    intro-server)
      flags="--config --listen --stun-port --stun-alt-port --no-stun --turn-url --turn-secret --turn-secret-file --turn-ttl
        --tls-cert --tls-key --public-host --allowed-keys --cluster --metrics --max-pending-per-address --max-pending
        --max-conns-per-address --max-conns --max-peers-per-key --max-peers-per-address
        --max-peers-total --log-level --log-format --help -h"
      ;;
    status)
      flags="--interface -i --json --run-dir --help -h"
      ;;
    release)
      flags="--interface -i --run-dir --state-dir --help -h"
      ;;
    ping)
      # -i is ping's interval here, not --interface.
      [[ $prev == -[ciW] || $prev == --count || $prev == --interval || $prev == --timeout ]] && return
      flags="--interface --count -c --interval -i --timeout -W --json --run-dir --help -h"
      ;;
    netcheck)
      [[ $prev == --timeout ]] && return
      flags="--interface -i --run-dir --stun --turn --turn-username --turn-password-file --timeout --json
        --help -h"
      ;;
    *) return ;;
  esac

  case $prev in
    --interface | -i)
      COMPREPLY=($(compgen -W "$(_tunnelbore_wireguard_interfaces)" -- "$cur"))
      return
      ;;
    --exclude-interface)
      COMPREPLY=($(compgen -W "$(ls /sys/class/net 2>/dev/null)" -- "$cur"))
      return
      ;;
    --ebpf)
      COMPREPLY=($(compgen -W "auto on off" -- "$cur"))
      return
      ;;
    --log-level)
      COMPREPLY=($(compgen -W "trace debug info warn error" -- "$cur"))
      return
      ;;
    --log-format)
      COMPREPLY=($(compgen -W "json pretty" -- "$cur"))
      return
      ;;
    --user)
      COMPREPLY=($(compgen -u -- "$cur"))
      return
      ;;
    --state-dir | --run-dir)
      COMPREPLY=($(compgen -d -- "$cur"))
      return
      ;;
    --config | --turn-password-file | --wg-quick-config | --turn-secret-file | --tls-cert | --tls-key | --allowed-keys)
      COMPREPLY=($(compgen -f -- "$cur"))
      return
      ;;
    --intro | --stun | --turn | --turn-username | --turn-password | --listen | --loopback-port-base | --metrics | \
      --endpoint | --poll-interval | --idle-timeout | --stun-port | --stun-alt-port | --turn-url | --turn-secret | --turn-ttl | --public-host | \
      --cluster | \
      --max-*)
      return # a value only the user knows
      ;;
  esac

  COMPREPLY=($(compgen -W "$flags" -- "$cur"))
}

complete -F _tunnelbore tunnelbore
